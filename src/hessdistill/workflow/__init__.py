"""The workflow layer: what the Snakefile needs on the submitting node (canonical params, the run matrix, config
checks, result paths).  Standard library (and PyYAML) only; the rules run the jobs of :mod:`hessdistill.jobs`.
"""
