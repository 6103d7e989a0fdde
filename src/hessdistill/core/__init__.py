"""The core layer: errors, atomic file writes, JSON and digests (file digests too), structure validation, devices, job
logs, the Hessian engine, neighbour lists and graph batches.  It imports nothing else of hessdistill; every other
layer may import it.

Nothing is imported here on purpose: the Snakefile imports :mod:`hessdistill.core.codehash` on the submitting
node, whose environment need have neither numpy nor torch.
"""
