"""Built-in offline datasets: deterministic generators labelled by an offline teacher.

Each family is a preset of :mod:`hessdistill.data.sampling`: a fixed list of parent structures (:func:`_parents`)
sampled by :func:`hessdistill.data.sampling.sample` with the default guard rails; the frames' ``info`` has
``family`` and no ``supercell`` (the parent name carries it), so the output is bit for bit what the generator gave
before it became a preset (``tests/test_sampling.py`` compares the two).  The generator takes the teacher as an ASE
calculator (energy and forces; e.g. ``hessdistill.teachers.calculator.TeacherCalculator(teacher)``), so this module does not load teachers: the jobs
do (:mod:`hessdistill.jobs.generate` for the command line, :mod:`hessdistill.jobs.prepare` for ``name: builtin``).

Two families, so that both materials and molecules are covered with no download at all:

``perovskites``
    cubic ABO3 perovskite oxides (SrTiO3, BaTiO3, CaTiO3, SrZrO3, BaZrO3, KNbO3, KTaO3, SrHfO3) in cells of
    5, 10, 20 and 40 atoms (1x1x1, 2x1x1, 2x2x1, 2x2x2 supercells of the 5-atom cell), under isotropic and
    uniaxial strain, sampled by short teacher-driven Langevin MD at several temperatures plus randomly
    rattled and sheared cells, and optionally teacher relaxation paths (``n_relax_series``).  A
    materials-science subset the shipped-weights models (CHGNet, SevenNet-0;
    both trained on MPtrj, which holds these compounds) cover well, and the paper's "perovskites" subset in
    miniature.
``molecules``
    small organic molecules (H, C, N, O; 3-12 atoms) from ASE's g2 collection, sampled by short Langevin MD at
    several temperatures plus rattled geometries; non-periodic.

Every structure carries teacher labels (energy, forces) and ``info`` entries: ``family``, ``parent`` (the
composition/cell it came from), ``trajectory`` (a group id: all frames of one MD run or one rattle series;
use it to group splits and avoid leakage), ``sampling`` ("md", "rattle" or "relax"), ``temperature_K``, ``strain``
and ``frame``.  The store records the labels it is given (the jobs give ``"teacher:<name>"``), the generator
settings and the sampling report (``sampling_report``: frames made and dropped by the guard rails, teacher calls).

The generator is deterministic for a given seed, settings and teacher (numpy ``default_rng`` streams per
trajectory; ASE Langevin with an explicit RNG).  Cost is dominated by teacher force calls: one per MD step,
one per rattled structure; :func:`estimate_calls` tells how many a setting needs.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields

import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.collections import g2

from ..core.errors import HessdistillError
from .sampling import SamplingSettings, report_json, sample

log = logging.getLogger(__name__)

#: (formula, A, B, cubic lattice constant in Å; room-temperature experimental values, rounded)
PEROVSKITES = (
    ("SrTiO3", "Sr", "Ti", 3.905),
    ("BaTiO3", "Ba", "Ti", 4.00),
    ("CaTiO3", "Ca", "Ti", 3.84),
    ("SrZrO3", "Sr", "Zr", 4.10),
    ("BaZrO3", "Ba", "Zr", 4.19),
    ("KNbO3", "K", "Nb", 4.02),
    ("KTaO3", "K", "Ta", 3.99),
    ("SrHfO3", "Sr", "Hf", 4.07),
)

#: g2 molecules with only H, C, N, O and 3..12 atoms (sorted for determinism)
MOLECULES = tuple(
    sorted(
        name
        for name in g2.names
        if 3 <= len(g2[name]) <= 12 and set(g2[name].get_chemical_symbols()) <= {"H", "C", "N", "O"}
    )
)


@dataclass
class GeneratorSettings:
    family: str = "perovskites"
    seed: int = 0
    #: number of MD trajectories and of rattle series; each contributes frames_per_trajectory structures
    n_trajectories: int = 24
    n_rattle_series: int = 8
    frames_per_trajectory: int = 10
    #: MD: steps between kept frames, after `equilibration_steps`
    sample_every: int = 2
    equilibration_steps: int = 4
    timestep_fs: float = 2.0
    friction_per_fs: float = 0.02
    temperatures_K: tuple = (300.0, 700.0, 1200.0)
    #: isotropic and uniaxial strains applied to the starting cell (fractions); molecules ignore them
    strains: tuple = (-0.03, -0.015, 0.0, 0.015, 0.03)
    supercells: tuple = ((1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2))
    #: rattled structures: Gaussian displacement sigma (Å) and cell shear sigma (fraction)
    rattle_sigma: float = 0.06
    shear_sigma: float = 0.015
    max_atoms: int = 40
    compositions: tuple = field(default_factory=tuple)  # empty: all of the family
    #: relaxation series: the teacher relaxes (FIRE, fixed cell) a rattled, strained parent and every
    #: `relax_every`-th step is kept, frames_per_trajectory per series: the near-equilibrium structures where
    #: harmonic frequencies and phonons are evaluated
    n_relax_series: int = 0
    relax_rattle_sigma: float = 0.1
    relax_every: int = 3

    def as_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def estimate_calls(s: GeneratorSettings) -> int:
    """Teacher force calls the generator makes (its cost, in units of one energy+forces call)."""
    md = s.n_trajectories * (1 + s.equilibration_steps + s.sample_every * s.frames_per_trajectory)
    relax = s.n_relax_series * (1 + s.relax_every * s.frames_per_trajectory)
    return md + s.n_rattle_series * s.frames_per_trajectory + relax


def _parents(s: GeneratorSettings) -> list[tuple[str, Atoms]]:
    if s.family == "perovskites":
        out = []
        for formula, a_el, b_el, a0 in PEROVSKITES:
            if s.compositions and formula not in s.compositions:
                continue
            prim = _perovskite(a_el, b_el, a0)
            for rep in s.supercells:
                if len(prim) * int(np.prod(rep)) <= s.max_atoms:
                    out.append((f"{formula}-{rep[0]}x{rep[1]}x{rep[2]}", prim.repeat(rep)))
        return out
    if s.family == "molecules":
        names = [n for n in MOLECULES if not s.compositions or n in s.compositions]
        return [(n, molecule(n)) for n in names if len(molecule(n)) <= s.max_atoms]
    raise HessdistillError(f"unknown built-in dataset family {s.family!r}; choose 'perovskites' or 'molecules'")


def _perovskite(a_el: str, b_el: str, a0: float) -> Atoms:
    """The 5-atom cubic Pm-3m cell: A at the corner, B at the body centre, O at the face centres."""
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    return Atoms([a_el, b_el, "O", "O", "O"], scaled_positions=frac, cell=np.eye(3) * a0, pbc=True)


def sampling_settings(s: GeneratorSettings) -> SamplingSettings:
    """The :class:`~hessdistill.data.sampling.SamplingSettings` of a built-in dataset: its sampling fields, with
    the supercells already made by :func:`_parents` (so 1x1x1 here, no atom limit) and the default guard rails."""
    shared = {f.name for f in fields(SamplingSettings)} & {f.name for f in fields(GeneratorSettings)}
    shared -= {"supercells", "max_atoms"}
    return SamplingSettings(**{k: getattr(s, k) for k in sorted(shared)}, supercells=((1, 1, 1),), max_atoms=None)


def generate_with_report(
    calculator, settings: GeneratorSettings | None = None, *, progress=None, checkpoint_dir=None, identity=None
) -> tuple[list[Atoms], dict]:
    """:func:`generate`, also returning the sampling report (frames made and dropped, teacher calls; see
    :func:`hessdistill.data.sampling.sample`, which also explains ``checkpoint_dir`` and ``identity``)."""
    s = settings or GeneratorSettings()
    parents = _parents(s)
    if not parents:
        raise HessdistillError(
            f"built-in dataset: no {s.family} parent structures match compositions={s.compositions} "
            f"and max_atoms={s.max_atoms}"
        )
    frames, report = sample(
        calculator,
        parents,
        sampling_settings(s),
        checkpoint_dir=checkpoint_dir,
        identity=identity,
        progress=progress,
        info={"family": s.family},
        record_supercell=False,
    )
    log.info(
        "built-in %s dataset: %d structures from %d teacher calls in %.1f s",
        s.family,
        len(frames),
        report["teacher_calls"],
        report["run"]["wall_time_s"],
    )
    return frames, report


def generate(calculator, settings: GeneratorSettings | None = None, *, progress=None) -> list[Atoms]:
    """Generate the built-in dataset with ``calculator`` (an ASE calculator giving energy and forces, e.g. a teacher
    wrapped in :class:`~hessdistill.teachers.calculator.TeacherCalculator`) as the potential and labeller: the
    family's parents (:func:`_parents`) sampled by :func:`hessdistill.data.sampling.sample`.

    ``progress(n)`` is called with the number of structures made after each trajectory or series.
    """
    return generate_with_report(calculator, settings, progress=progress)[0]


def build_store(
    path,
    calculator,
    settings: GeneratorSettings | None = None,
    *,
    labels: str,
    attrs=None,
    fractions=None,
    split_seed: int = 0,
    progress=None,
):
    """Generate (:func:`generate` with ``calculator``), split (grouped by trajectory, so no MD run straddles two
    splits) and write a structure store recording ``labels`` (e.g. ``"teacher:<name>"``), the generator settings
    (attribute ``generator``), the sampling report (``sampling_report``, JSON) and the provenance ``attrs`` (e.g. the teacher's version and dtype)."""
    from .splits import make_splits, write_split_store

    s = settings or GeneratorSettings()
    fractions = fractions or {"train": 0.7, "val": 0.1, "test": 0.2}
    structures, report = generate_with_report(calculator, s, progress=progress)
    splits = make_splits(structures, fractions=fractions, seed=split_seed, group_by="trajectory")
    return write_split_store(
        path,
        splits,
        seed=split_seed,
        source=f"hessdistill.data.builtin:{s.family}",
        group_by="trajectory",
        fractions=fractions,
        labels=labels,
        attrs={"generator": s.as_dict(), "sampling_report": report_json(report), **(attrs or {})},
    )


def settings_from_options(family: str | None = None, **options) -> GeneratorSettings:
    """:class:`GeneratorSettings` from plain config/JSON values (lists become tuples); unknown names raise
    ``HessdistillError`` listing the valid ones."""
    fields = GeneratorSettings.__dataclass_fields__
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise HessdistillError(f"unknown generator setting(s) {unknown}; valid: {sorted(fields)}")
    if family is not None:
        options["family"] = family
    return GeneratorSettings(
        **{
            k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
            for k, v in options.items()
        }
    )
