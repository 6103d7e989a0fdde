"""Evaluation of students and teachers: accuracy, speed, vibrations, phonons, MD stability, relaxation; and, for
students, their disagreement with partner students trained on the same data.

Every evaluation but the disagreement runs identically for a student and for a teacher, the model under evaluation
(:class:`hessdistill.core.model.EvaluatedModel`), or for any other ASE calculator.  Hessian-based evaluations take
``hessian_fn(atoms) -> (3N, 3N)`` (eV/Å²), defaulting to finite differences of the calculator's forces.  Every
function returns a plain JSON-able dict with units in the key names; :func:`hessdistill.evaluation.output.write_json`
writes one atomically.

Modules: :mod:`.protocols` (the evaluations, their defaults and which need the reference teacher; plain Python),
:mod:`.registry` (name -> the function that runs it), :mod:`.accuracy`, :mod:`.speed`, :mod:`.vibrations`,
:mod:`.phonons`, :mod:`.md`, :mod:`.disagreement`, :mod:`.batched_md`, :mod:`.relax`, :mod:`.smoothness` and :mod:`.output`.

Nothing is imported here on purpose: the workflow imports :mod:`hessdistill.evaluation.protocols` on the submitting
node, whose environment need have neither numpy nor torch.  Import names from their modules.
"""
