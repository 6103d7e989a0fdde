"""The jobs layer: one module per workflow step, each with ``run(...)`` (a library call) and ``main()`` (its console
script).  A job reads its inputs, calls the library layers below (data, teachers, students, training,
evaluation, reporting) and writes its outputs atomically.  Nothing below imports a job.
"""
