"""The evaluation protocols: which evaluations exist, which compare with the reference teacher, their default
settings, and the vibrations settings that decide the teacher minima.  The one home of these facts.

Plain Python on purpose (no numpy, torch or ASE): the workflow (rules/common.smk, :mod:`hessdistill.workflow`)
imports it on the submitting node, whose environment need have only Snakemake and PyYAML.  The functions that run
the evaluations are bound to these names in :mod:`hessdistill.evaluation.registry`; the config schema's
``evaluation.protocol`` section is kept in step with :data:`DEFAULTS` by tests/test_evaluation_protocols.py.
"""

from __future__ import annotations

import copy

#: every evaluation, in the order the evaluation job runs them
EVALUATIONS = ("test", "vibrations", "phonons", "md", "disagreement", "relax", "speed")

#: evaluations that compare with the reference teacher's own calculation (relaxations, Hessians, timings)
NEEDS_REFERENCE = ("vibrations", "phonons", "relax", "speed")

#: evaluations that run on the job's device (a GPU where the workflow has one): long MD and timings
GPU_EVALUATIONS = ("md", "disagreement", "speed")

#: evaluations of student runs only (the teacher pseudo-run has no partner students to disagree with); the
#: workflow gives each its own rule, whose inputs include the partners' models
STUDENT_ONLY = ("disagreement",)

#: the partner runs of the disagreement evaluation: every other run of the same subset and teacher
AUTO_PARTNERS = "auto"

#: the vibrations protocol keys that decide the teacher minima (the rest of the evaluation can change freely)
MINIMA_KEYS = ("n_structures", "fmax", "max_steps", "molecules_only")

#: the protocols' defaults, per evaluation, plus the split evaluated.  They follow the paper (MD 300 K, 1 fs, NVE;
#: FIRE to 0.05 eV/Å; speed at batch 32), scaled down in length; the workflow's evaluation.protocol overrides them
DEFAULTS = {
    "split": "test",
    "test": {"max_hessian_structures": 50, "batch_size": 32, "parity_points": 2000},
    "vibrations": {"n_structures": 5, "fmax": 1e-3, "max_steps": 1000, "molecules_only": False},
    "phonons": {
        "n_structures": 2,
        "fmax": 1e-3,
        "max_steps": 500,
        "min_supercell_length": 8.0,
        "displacement": 0.01,
        "mesh": [8, 8, 8],
        "band_points": 31,
        "symmetrize": 0.1,
    },
    "md": {
        "n_structures": 5,
        "ensemble": "nve",
        "temperature_K": 300.0,
        "timestep_fs": 1.0,
        "steps": 1000,
        "friction_per_fs": 0.01,
        "log_every": 10,
        "seed": 0,
        "max_deviation": 0.5,
        "criterion": "auto",
        "keep_series": True,
        "min_energy_frames": 10,
        "min_energy_window_ps": 0.5,
        "bond_reference": "training",
        "check_every": 1,
    },
    # partners: "auto" (every other run of the same subset and teacher) or a list of run names (the run itself
    # left out); threshold_eV_A: a number, or "auto": threshold_factor x the 95th percentile of the disagreement
    # on the test structures (hessdistill.evaluation.disagreement); Langevin MD by default
    "disagreement": {
        "partners": AUTO_PARTNERS,
        "n_structures": 5,
        "baseline_structures": 100,
        "ensemble": "nvt",
        "temperature_K": 300.0,
        "timestep_fs": 1.0,
        "steps": 1000,
        "friction_per_fs": 0.01,
        "every": 10,
        "seed": 0,
        "threshold_eV_A": "auto",
        "threshold_factor": 3.0,
        "max_force_eV_A": 1000.0,
    },
    # perturb 0: the unperturbed test structures (the paper's); reference_calculator: {model, options} re-scores the
    # final geometries (the paper's DFT re-scoring), see hessdistill.teachers.reference.reference_calculator
    "relax": {
        "n_structures": 5,
        "optimizer": "FIRE",
        "fmax": 0.05,
        "max_steps": 500,
        "perturb": 0.05,
        "seed": 0,
        "reference_calculator": None,
    },
    # warmup_batches null: every batch called `warmup` times before timing; k: one pass, the first k batches
    # untimed (the paper's: 3)
    "speed": {
        "n_structures": 32,
        "batch_size": 32,
        "repeats": 5,
        "warmup": 2,
        "warmup_batches": None,
        "large_atoms": 500,
        "student_format": "aoti",
        "skin": 0.5,
    },
}


def merge_config(overrides: dict | None) -> dict:
    """:data:`DEFAULTS` with ``overrides`` (``{"split": ..., evaluation: {option: value}}``) on top, as a new dict.

    Raises :class:`~hessdistill.core.errors.HessdistillError` for an unknown section or option, naming the valid ones.
    """
    from ..core.errors import HessdistillError

    cfg = copy.deepcopy(DEFAULTS)
    for k, v in (overrides or {}).items():
        if k not in cfg:
            raise HessdistillError(f"unknown evaluation section {k!r}; valid: {sorted(cfg)}")
        if isinstance(cfg[k], dict):
            if not isinstance(v, dict):
                raise HessdistillError(f"evaluation section {k!r} must be a mapping")
            bad = sorted(set(v) - set(cfg[k]))
            if bad:
                raise HessdistillError(f"unknown option(s) {bad} in evaluation section {k!r}; valid: {sorted(cfg[k])}")
            cfg[k].update(v)
        else:
            cfg[k] = v
    return cfg
