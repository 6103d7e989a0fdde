"""Teacher-driven sampling around seed structures: MD, rattles and relaxation paths, with guard rails.

The sampler takes the teacher as an ASE calculator (energy and forces; e.g.
``hessdistill.teachers.calculator.TeacherCalculator(teacher)``) and any seed structures, periodic or not, as
``(name, Atoms)`` pairs; it does not load teachers (the jobs do: :mod:`hessdistill.jobs.prepare` for
``source: {name: sample, path: seeds.extxyz}``).  The built-in datasets (:mod:`hessdistill.data.builtin`) are
presets of it: fixed families of seeds sampled with :func:`sample`.

From the seeds (each periodic one repeated into every ``supercells`` entry with at most ``max_atoms`` atoms: the
*parents*) it makes, in this order:

* with ``seed_frames``, every seed itself, labelled (``sampling: "seed"``; this is how a file of flagged frames
  gets teacher labels);
* ``n_trajectories`` Langevin MD runs with the teacher, each from a strained (periodic parents), slightly rattled
  parent at a temperature drawn from ``temperatures_K``; ``frames_per_trajectory`` frames, one every
  ``sample_every`` steps after ``equilibration_steps``;
* ``n_rattle_series`` series of ``frames_per_trajectory`` independent random displacements (``rattle_sigma``) and,
  for periodic parents, cell shears (``shear_sigma``) around a strained parent;
* ``n_relax_series`` teacher FIRE relaxations (fixed cell) from a strained parent rattled by
  ``relax_rattle_sigma``, a frame every ``relax_every`` steps.

Every frame records in ``info``: ``parent`` (the parent's name: the seed's, with ``-AxBxC`` appended for a
supercell other than 1x1x1), ``trajectory`` (a group id, ``md0003``, ``rattle0001``, ``relax0000`` or
``seed0002``: group splits by it so that no run straddles two splits), ``sampling`` (``md``, ``rattle``,
``relax``, ``seed``), ``temperature_K``, ``strain``, ``frame`` and ``supercell`` (``"2x1x1"``).

Guard rails: a frame whose teacher energy or forces are non-finite (reason ``non_finite``), whose largest atomic
force exceeds ``max_force_eV_A`` (``max_force``), or whose atoms (periodic images included) come closer than
``min_distance_factor`` times the sum of their ASE covalent radii, and never closer than the structure store's
:data:`~hessdistill.core.structures.MIN_DISTANCE_A` (``too_close``; checked before the teacher is called), is
dropped and counted per reason and per parent, never kept.  An MD run or relaxation that meets such a frame
stops there (its remaining frames count as ``trajectory_stopped``) instead of continuing from a broken geometry;
one whose starting geometry is too close is not run.  When every frame is dropped, :func:`sample` raises an error
naming the seeds.

Determinism: the same seeds, settings and calculator (one whose labels depend on the structure alone, as a
teacher's do; ASE's EMT, whose neighbour list keeps a skin between calls, does not quite) give the same frames (numpy ``default_rng`` stream per
trajectory and series, ASE Langevin with an explicit RNG; the parent of every trajectory and series is drawn up
front from one stream seeded by ``seed``, MD first, then rattle, then relaxation series).

Resumption: with ``checkpoint_dir``, every finished trajectory or series is written atomically to
``<checkpoint_dir>/<key>/`` where ``key`` is a digest of the settings, the seed structures and the caller's
``identity`` (the teacher's name, version, dtype, device), so that a rerun with the same inputs loads the
finished ones and computes only the rest, and different inputs never reuse a file.  The caller removes the
folder once it has written its output.

The report (:func:`sample`'s second value) counts frames made and dropped (per reason and per parent) and
teacher calls; its ``run`` entry (wall time, calls made in this run, series loaded from checkpoints) differs
between an interrupted-and-resumed run and a run in one go, the rest does not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import covalent_radii
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.neighborlist import neighbor_list
from ase.optimize import FIRE

from ..core.atomic import atomic_path, atomic_write_text
from ..core.errors import HessdistillError
from ..core.structures import MIN_DISTANCE_A

__all__ = ["REASONS", "SamplingSettings", "checkpoint_folder", "report_json", "sample", "settings_from_options"]

log = logging.getLogger(__name__)

#: why a frame was dropped
REASONS = ("too_close", "non_finite", "max_force", "trajectory_stopped")
#: the layout of the checkpoint files; part of the checkpoint key, so a new layout never reads an old file
CHECKPOINT_FORMAT = 1


@dataclass
class SamplingSettings:
    seed: int = 0
    #: number of MD trajectories, rattle series and relaxation series; each makes frames_per_trajectory frames
    n_trajectories: int = 24
    n_rattle_series: int = 8
    n_relax_series: int = 0
    frames_per_trajectory: int = 10
    #: MD: steps between kept frames, after `equilibration_steps`
    sample_every: int = 2
    equilibration_steps: int = 4
    timestep_fs: float = 2.0
    friction_per_fs: float = 0.02
    temperatures_K: tuple = (300.0, 700.0, 1200.0)
    #: isotropic and uniaxial strains applied to periodic parents (fractions); non-periodic parents ignore them
    strains: tuple = (-0.03, -0.015, 0.0, 0.015, 0.03)
    #: rattled structures: Gaussian displacement sigma (Å) and cell shear sigma (fraction, periodic parents)
    rattle_sigma: float = 0.06
    shear_sigma: float = 0.015
    #: relaxation series: starting displacement sigma (Å) and FIRE steps between kept frames
    relax_rattle_sigma: float = 0.1
    relax_every: int = 3
    #: repetitions of every periodic seed (along its periodic axes only); at most max_atoms atoms (None: no limit)
    supercells: tuple = ((1, 1, 1),)
    max_atoms: int | None = None
    #: keep every seed itself as a labelled frame (sampling "seed")
    seed_frames: bool = False
    #: guard rails: largest atomic force (eV/Å) and closest approach (fraction of the covalent-radius sum)
    max_force_eV_A: float = 50.0
    min_distance_factor: float = 0.5

    def as_dict(self) -> dict:
        d = asdict(self)
        return {
            k: ([list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, tuple) else v)
            for k, v in d.items()
        }

    def check(self) -> None:
        """Raise :class:`HessdistillError` naming the first setting with a value the sampler cannot use."""

        def bad(key, problem, fix):
            raise HessdistillError(f"sampling setting {key!r}: {problem}\n  fix: {fix}")

        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v)

        for key in ("seed", "n_trajectories", "n_rattle_series", "n_relax_series", "equilibration_steps"):
            v = getattr(self, key)
            if not is_int(v) or v < 0:
                bad(key, f"{v!r} is not an integer >= 0", "give a whole number, 0 or more")
        for key in ("frames_per_trajectory", "sample_every", "relax_every"):
            v = getattr(self, key)
            if not is_int(v) or v < 1:
                bad(key, f"{v!r} is not an integer >= 1", "give a whole number, 1 or more")
        for key in ("timestep_fs", "max_force_eV_A"):
            v = getattr(self, key)
            if not is_num(v) or v <= 0:
                bad(key, f"{v!r} is not a number > 0", "give a positive number")
        for key in ("friction_per_fs", "rattle_sigma", "shear_sigma", "relax_rattle_sigma", "min_distance_factor"):
            v = getattr(self, key)
            if not is_num(v) or v < 0:
                bad(key, f"{v!r} is not a number >= 0", "give a number, 0 or more")
        for key in ("temperatures_K", "strains"):
            v = getattr(self, key)
            if not isinstance(v, (tuple, list)) or not all(is_num(x) for x in v):
                bad(key, f"{v!r} is not a list of numbers", f"give a list, e.g. {list(getattr(SamplingSettings, key))}")
        if any(t < 0 for t in self.temperatures_K):
            bad("temperatures_K", f"{list(self.temperatures_K)} holds a negative temperature", "use kelvins >= 0")
        if self.n_trajectories and not self.temperatures_K:
            bad("temperatures_K", "is empty but n_trajectories > 0", "give at least one MD temperature")
        if any(s <= -1 for s in self.strains):
            bad("strains", f"{list(self.strains)} holds a strain <= -1 (a collapsed cell)", "use small fractions")
        reps = self.supercells
        if (
            not isinstance(reps, (tuple, list))
            or not reps
            or not all(
                isinstance(r, (tuple, list)) and len(r) == 3 and all(is_int(x) and x >= 1 for x in r) for r in reps
            )
        ):
            bad(
                "supercells",
                f"{reps!r} is not a non-empty list of [a, b, c] repetitions (integers >= 1)",
                "e.g. [[1, 1, 1], [2, 2, 2]]",
            )
        if self.max_atoms is not None and (not is_int(self.max_atoms) or self.max_atoms < 1):
            bad("max_atoms", f"{self.max_atoms!r} is not an integer >= 1", "give the largest parent size, or null")
        if not isinstance(self.seed_frames, bool):
            bad("seed_frames", f"{self.seed_frames!r} is not true or false", "write true or false")


def settings_from_options(**options) -> SamplingSettings:
    """:class:`SamplingSettings` from plain config/JSON values (lists become tuples), checked; unknown names raise
    :class:`HessdistillError` listing the valid ones."""
    valid = [f.name for f in fields(SamplingSettings)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise HessdistillError(f"unknown sampling setting(s) {unknown}; valid: {', '.join(valid)}")
    s = SamplingSettings(
        **{
            k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
            for k, v in options.items()
        }
    )
    s.check()
    return s


# ====================================================================== pieces
class _Counting(Calculator):
    """The teacher calculator, counting the structures it is asked about (one call gives energy and forces)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        self.results = {"energy": self.inner.get_potential_energy(atoms), "forces": self.inner.get_forces(atoms)}


def _strain(atoms: Atoms, rng, strains) -> tuple[Atoms, float]:
    if not atoms.pbc.any():
        return atoms.copy(), 0.0
    eps = float(rng.choice(strains))
    a = atoms.copy()
    if rng.random() < 0.5:  # isotropic
        m = np.eye(3) * (1 + eps)
    else:  # uniaxial along a random axis
        m = np.eye(3)
        axis = int(rng.integers(3))
        m[axis, axis] += eps
    a.set_cell(a.cell.array @ m, scale_atoms=True)
    return a, eps


def _labelled(atoms: Atoms, e: float, f: np.ndarray, info: dict) -> Atoms:
    a = Atoms(atoms.numbers, positions=atoms.positions.copy(), cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy())
    a.info.update(info)
    a.calc = SinglePointCalculator(a, energy=float(e), forces=np.array(f, dtype=np.float64))
    return a


class _Guard:
    def __init__(self, s: SamplingSettings):
        self.max_force = float(s.max_force_eV_A)
        self.factor = float(s.min_distance_factor)

    def too_close(self, atoms: Atoms) -> str | None:
        """``"non_finite"`` (positions or cell), ``"too_close"`` or None, before the teacher is called."""
        if not (np.isfinite(atoms.positions).all() and np.isfinite(atoms.cell.array).all()):
            return "non_finite"
        if len(atoms) == 1 and not atoms.pbc.any():
            return None
        radii = covalent_radii[atoms.numbers]
        cutoff = max(self.factor * 2 * float(radii.max()), MIN_DISTANCE_A)
        i, j, d = neighbor_list("ijd", atoms, cutoff)
        if len(d) and (d < np.maximum(self.factor * (radii[i] + radii[j]), MIN_DISTANCE_A)).any():
            return "too_close"
        return None

    def labels(self, e, f) -> str | None:
        f = np.asarray(f, dtype=np.float64)
        if not (np.isfinite(e) and np.isfinite(f).all()):
            return "non_finite"
        if len(f) and float(np.sqrt((f**2).sum(axis=1)).max()) > self.max_force:
            return "max_force"
        return None


class _Series:
    """The frames of one trajectory or series and what was dropped (per reason and parent)."""

    def __init__(self, key: str):
        self.key = key
        self.frames: list[Atoms] = []
        self.dropped: dict[str, dict[str, int]] = {}  # parent -> reason -> n
        self.made: dict[str, int] = {}
        self.calls = 0
        self.stopped = False

    def keep(self, atoms, e, f, info):
        self.frames.append(_labelled(atoms, e, f, info))
        self.made[info["parent"]] = self.made.get(info["parent"], 0) + 1

    def drop(self, parent, reason, n=1):
        if n:
            d = self.dropped.setdefault(parent, {})
            d[reason] = d.get(reason, 0) + n

    def stats(self) -> dict:
        return {"made": self.made, "dropped": self.dropped, "calls": self.calls, "stopped": self.stopped}


def _rep_name(rep) -> str:
    return "x".join(str(int(x)) for x in rep)


def _clean(atoms: Atoms) -> Atoms:
    """Numbers, positions, cell, pbc (and masses, when set): no calculator, constraints, labels or info."""
    a = Atoms(atoms.numbers, positions=atoms.positions.copy(), cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy())
    if "masses" in atoms.arrays:
        a.set_masses(atoms.get_masses())
    return a


def _seeds(parents) -> list[tuple[str, Atoms]]:
    out, names = [], set()
    for i, item in enumerate(parents):
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], Atoms)):
            raise HessdistillError(
                f"sampling: seed {i} is not a (name, ase.Atoms) pair\n  fix: pass [(name, atoms), ...]"
            )
        name, atoms = str(item[0]), item[1]
        if name in names:
            raise HessdistillError(f"sampling: two seeds are named {name!r}\n  fix: give every seed its own name")
        if len(atoms) == 0:
            raise HessdistillError(f"sampling: seed {name!r} has no atoms\n  fix: remove it from the seeds")
        names.add(name)
        out.append((name, atoms))
    if not out:
        raise HessdistillError("sampling: no seed structures\n  fix: give at least one seed structure")
    return out


def _expand(seeds, s: SamplingSettings) -> list[tuple[str, Atoms, str]]:
    """The parents: every periodic seed in every supercell (repeated along its periodic axes only) with at most
    max_atoms atoms, every non-periodic seed as it is (when it has at most max_atoms atoms)."""
    out = []
    for name, atoms in seeds:
        reps = [tuple(int(x) for x in r) for r in s.supercells] if atoms.pbc.any() else [(1, 1, 1)]
        reps = list(dict.fromkeys(r for r in reps if all(n == 1 or p for n, p in zip(r, atoms.pbc))))
        for rep in reps:
            if s.max_atoms is not None and len(atoms) * int(np.prod(rep)) > s.max_atoms:
                continue
            big = atoms if rep == (1, 1, 1) else atoms.repeat(rep)
            out.append((name if rep == (1, 1, 1) else f"{name}-{_rep_name(rep)}", big, _rep_name(rep)))
    return out


# ====================================================================== the series
def _info(prefix, record_supercell, parent, trajectory, sampling, temp, eps, frame, rep):
    info = dict(prefix)
    info.update(
        {
            "parent": parent,
            "trajectory": trajectory,
            "sampling": sampling,
            "temperature_K": temp,
            "strain": eps,
            "frame": frame,
        }
    )
    if record_supercell:
        info["supercell"] = rep
    return info


def _seed_series(calc, seeds, s, guard, prefix, record_supercell) -> _Series:
    out = _Series("seeds")
    for i, (name, atoms) in enumerate(seeds):
        a = _clean(atoms)
        reason = guard.too_close(a)
        if reason is None:
            a.calc = calc
            e, f = a.get_potential_energy(), a.get_forces()
            reason = guard.labels(e, f)
        if reason:
            out.drop(name, reason)
            continue
        out.keep(a, e, f, _info(prefix, record_supercell, name, f"seed{i:04d}", "seed", 0.0, 0.0, 0, "1x1x1"))
    return out


def _md(calc, t, parent, s, guard, prefix, record_supercell) -> _Series:
    pname, patoms, rep = parent
    out = _Series(f"md{t:04d}")
    rng = np.random.default_rng([s.seed, 1, t])
    temp = float(rng.choice(s.temperatures_K))
    atoms, eps = _strain(patoms, rng, s.strains)
    atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
    reason = guard.too_close(atoms)
    if reason:
        out.drop(pname, reason, s.frames_per_trajectory)
        out.stopped = True
        return out
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=temp, rng=rng)
    Stationary(atoms)
    dyn = Langevin(
        atoms,
        timestep=s.timestep_fs * units.fs,
        temperature_K=temp,
        friction=s.friction_per_fs / units.fs,
        rng=rng,
        fixcm=True,
    )
    dyn.run(s.equilibration_steps)
    for frame in range(s.frames_per_trajectory):
        dyn.run(s.sample_every)
        reason = guard.too_close(atoms)
        if reason is None:
            e = atoms.get_potential_energy()
            f = atoms.get_forces()
            reason = guard.labels(e, f)
        if reason:  # an exploding run: stop, never continue from a broken geometry
            out.drop(pname, reason)
            out.drop(pname, "trajectory_stopped", s.frames_per_trajectory - frame - 1)
            out.stopped = True
            break
        info = _info(prefix, record_supercell, pname, out.key, "md", temp, eps, frame, rep)
        out.keep(atoms, e, f, info)
    return out


def _rattle(calc, r, parent, s, guard, prefix, record_supercell) -> _Series:
    pname, patoms, rep = parent
    out = _Series(f"rattle{r:04d}")
    rng = np.random.default_rng([s.seed, 2, r])
    base, eps = _strain(patoms, rng, s.strains)
    for frame in range(s.frames_per_trajectory):
        a = base.copy()
        if a.pbc.any():
            shear = np.eye(3) + rng.normal(scale=s.shear_sigma, size=(3, 3))
            a.set_cell(a.cell.array @ shear, scale_atoms=True)
        a.positions += rng.normal(scale=s.rattle_sigma, size=a.positions.shape)
        reason = guard.too_close(a)
        if reason is None:
            a.calc = calc
            e, f = a.get_potential_energy(), a.get_forces()
            reason = guard.labels(e, f)
        if reason:  # independent frames: drop this one, go on
            out.drop(pname, reason)
            continue
        out.keep(a, e, f, _info(prefix, record_supercell, pname, out.key, "rattle", 0.0, eps, frame, rep))
    return out


def _relax(calc, r, parent, s, guard, prefix, record_supercell) -> _Series:
    pname, patoms, rep = parent
    out = _Series(f"relax{r:04d}")
    rng = np.random.default_rng([s.seed, 3, r])
    atoms, eps = _strain(patoms, rng, s.strains)
    atoms.positions += rng.normal(scale=s.relax_rattle_sigma, size=atoms.positions.shape)
    reason = guard.too_close(atoms)
    if reason:
        out.drop(pname, reason, s.frames_per_trajectory)
        out.stopped = True
        return out
    atoms.calc = calc
    opt = FIRE(atoms, logfile=None)
    for frame in range(s.frames_per_trajectory):
        reason = guard.too_close(atoms)
        if reason is None:
            e = atoms.get_potential_energy()
            f = atoms.get_forces()
            reason = guard.labels(e, f)
        if reason:
            out.drop(pname, reason)
            out.drop(pname, "trajectory_stopped", s.frames_per_trajectory - frame - 1)
            out.stopped = True
            break
        out.keep(atoms, e, f, _info(prefix, record_supercell, pname, out.key, "relax", 0.0, eps, frame, rep))
        opt.run(fmax=1e-4, steps=s.relax_every)
    return out


# ====================================================================== checkpoints
def _atoms_digest(atoms: Atoms) -> str:
    h = hashlib.sha256()
    for arr in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, atoms.get_masses()):
        a = np.ascontiguousarray(arr)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def checkpoint_folder(
    checkpoint_dir, parents, settings: SamplingSettings, identity: str, *, info=None, record_supercell=True
) -> Path:
    """The folder under ``checkpoint_dir`` that holds the finished series of this sampling: keyed by a digest of
    the settings, the seed structures (names, atomic numbers, positions, cell, pbc, masses), ``identity`` and the
    frame info layout."""
    key = {
        "format": CHECKPOINT_FORMAT,
        "settings": settings.as_dict(),
        "identity": identity,
        "info": dict(info or {}),
        "record_supercell": bool(record_supercell),
        "seeds": [[str(name), _atoms_digest(atoms)] for name, atoms in parents],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return Path(checkpoint_dir) / digest[:20]


def _save(path: Path, series: _Series) -> None:
    frames = series.frames
    n = [len(a) for a in frames]
    empty3 = np.zeros((0, 3))
    arrays = {
        "numbers": np.concatenate([a.numbers for a in frames]) if frames else np.zeros(0, dtype=np.int64),
        "positions": np.concatenate([a.positions for a in frames]) if frames else empty3,
        "forces": np.concatenate([a.get_forces() for a in frames]) if frames else empty3,
        "cells": np.array([a.cell.array for a in frames]).reshape(-1, 3, 3),
        "pbc": np.array([a.pbc for a in frames], dtype=bool).reshape(-1, 3),
        "n_atoms": np.array(n, dtype=np.int64),
        "energy": np.array([a.get_potential_energy() for a in frames], dtype=np.float64),
        "info": np.array(json.dumps([a.info for a in frames])),
        "stats": np.array(json.dumps(series.stats())),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _load(path: Path) -> _Series:
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        infos, stats = json.loads(str(d["info"])), json.loads(str(d["stats"]))
        out = _Series(path.stem)
        offsets = np.concatenate([[0], np.cumsum(d["n_atoms"])])
        for m, info in enumerate(infos):
            sl = slice(int(offsets[m]), int(offsets[m + 1]))
            atoms = Atoms(d["numbers"][sl], positions=d["positions"][sl], cell=d["cells"][m], pbc=d["pbc"][m])
            out.frames.append(_labelled(atoms, d["energy"][m], d["forces"][sl], info))
        out.made, out.dropped, out.calls, out.stopped = (
            stats["made"],
            stats["dropped"],
            stats["calls"],
            stats["stopped"],
        )
        return out
    except (OSError, KeyError, ValueError) as exc:
        raise HessdistillError(
            f"sampling checkpoint {str(path)!r} cannot be read ({exc})\n  fix: delete this file (it is recomputed)"
        ) from exc


# ====================================================================== the sampler
def n_series(s: SamplingSettings) -> int:
    """MD trajectories, rattle series and relaxation series of ``s`` (not counting the seed frames)."""
    return s.n_trajectories + s.n_rattle_series + s.n_relax_series


def sample(
    calculator,
    parents: list[tuple[str, Atoms]],
    settings: SamplingSettings | None = None,
    *,
    checkpoint_dir=None,
    identity: str | None = None,
    progress=None,
    info: dict | None = None,
    record_supercell: bool = True,
) -> tuple[list[Atoms], dict]:
    """Sample around the seed structures ``parents`` (``[(name, Atoms), ...]``) with ``calculator`` (an ASE
    calculator giving energy and forces, e.g. a teacher in
    :class:`~hessdistill.teachers.calculator.TeacherCalculator`) as the potential and the labeller; return the
    labelled frames and the report (see the module docstring).

    ``checkpoint_dir``: resume from (and save) finished trajectories and series there, under a folder keyed by the
    settings, the seeds and ``identity`` (required with it: a string naming the calculator, e.g.
    ``"chgnet:0.3.0:float32:cpu"``).  ``progress(n)`` is called with the number of frames made after each
    trajectory or series.  ``info``: entries put first in every frame's ``info`` (the built-in presets give their
    ``family``); ``record_supercell=False`` leaves ``supercell`` out (the built-in presets, whose parent names say
    it).
    """
    s = settings or SamplingSettings()
    s.check()
    t0 = time.perf_counter()
    seeds = _seeds(parents)
    prefix = dict(info or {})
    expanded = _expand(seeds, s)
    n_sampled = n_series(s)
    seed_names = ", ".join(name for name, _ in seeds[:20]) + (", ..." if len(seeds) > 20 else "")
    if n_sampled and not expanded:
        raise HessdistillError(
            f"sampling: no parent structure from the seeds ({seed_names}) has at most max_atoms={s.max_atoms} atoms "
            f"in any of the supercells {[list(r) for r in s.supercells]}\n  fix: raise max_atoms or add smaller supercells"
        )
    if not n_sampled and not s.seed_frames:
        raise HessdistillError(
            "sampling: the settings make no frames (n_trajectories, n_rattle_series and n_relax_series are 0 and "
            "seed_frames is false)\n  fix: set one of them"
        )
    if n_sampled and not s.strains and any(p.pbc.any() for _, p, _ in expanded):
        raise HessdistillError(
            "sampling setting 'strains': is empty but there are periodic seeds\n  fix: give at least one strain, e.g. [0.0]"
        )
    master = np.random.default_rng(s.seed)
    plan = [("seeds", _seed_series, None)] if s.seed_frames else []
    for kind, fn, n in (
        ("md", _md, s.n_trajectories),
        ("rattle", _rattle, s.n_rattle_series),
        ("relax", _relax, s.n_relax_series),
    ):
        plan += [(f"{kind}{i:04d}", fn, (i, expanded[int(master.integers(len(expanded)))])) for i in range(n)]

    folder = None
    if checkpoint_dir is not None:
        if not identity:
            raise HessdistillError(
                "sampling: a checkpoint_dir needs an identity string naming the calculator\n"
                "  fix: pass identity='<teacher>:<version>:<dtype>:<device>'"
            )
        folder = checkpoint_folder(checkpoint_dir, seeds, s, identity, info=prefix, record_supercell=record_supercell)
        folder.mkdir(parents=True, exist_ok=True)
        inputs = folder / "inputs.json"
        if not inputs.exists():
            atomic_write_text(
                inputs,
                json.dumps({"identity": identity, "settings": s.as_dict(), "seeds": [n for n, _ in seeds]}, indent=1),
            )

    calc = _Counting(calculator)
    guard = _Guard(s)
    frames: list[Atoms] = []
    done: list[_Series] = []
    resumed = 0
    for key, fn, args in plan:
        path = folder / f"{key}.npz" if folder is not None else None
        if path is not None and path.exists():
            series = _load(path)
            resumed += 1
        else:
            before = calc.calls
            if fn is _seed_series:
                series = _seed_series(calc, seeds, s, guard, prefix, record_supercell)
            else:
                series = fn(calc, args[0], args[1], s, guard, prefix, record_supercell)
            series.calls = calc.calls - before
            if path is not None:
                _save(path, series)
        done.append(series)
        frames += series.frames
        if progress:
            progress(len(frames))

    report = _report(done, s, seeds if s.seed_frames else [], expanded, n_seeds=len(seeds))
    report["run"] = {
        "wall_time_s": round(time.perf_counter() - t0, 3),
        "teacher_calls": calc.calls,
        "series_resumed": resumed,
        "checkpoint": str(folder) if folder is not None else None,
    }
    dropped = report["frames_dropped"]
    log.info(
        "sampling: %d frames from %d seeds (%d parents), %d dropped %s; %d teacher calls (%d in this run, %d series "
        "loaded from checkpoints) in %.1f s",
        len(frames),
        len(seeds),
        len(expanded),
        dropped,
        {k: v for k, v in report["dropped"].items() if v},
        report["teacher_calls"],
        calc.calls,
        resumed,
        report["run"]["wall_time_s"],
    )
    if not frames:
        raise HessdistillError(
            f"sampling: every one of the {dropped} frames was dropped by the guard rails "
            f"({', '.join(f'{k}: {v}' for k, v in report['dropped'].items() if v)}); seeds: {seed_names}\n"
            "  fix: check the seed structures (overlapping atoms? a teacher that does not cover their elements?), "
            "lower temperatures_K / rattle_sigma, or relax max_force_eV_A / min_distance_factor"
        )
    if dropped:
        log.warning(
            "sampling: %d frames dropped by the guard rails (per parent: %s)",
            dropped,
            {p: v["dropped"] for p, v in report["per_parent"].items() if v["dropped"]},
        )
    return frames, report


def report_json(report: dict) -> str:
    """The report as JSON for a store attribute, without its ``run`` entry (wall time, calls made in this run,
    series resumed), which differs between runs of the same inputs: the same inputs give the same store."""
    return json.dumps({k: v for k, v in report.items() if k != "run"}, sort_keys=True)


def _report(done: list[_Series], s: SamplingSettings, seeds, expanded, *, n_seeds: int) -> dict:
    """``seeds``: those labelled as seed frames (their names are parents too)."""
    names = [name for name, _ in seeds] + [name for name, _, _ in expanded if n_series(s)]
    per_parent: dict[str, dict] = {name: {"made": 0, "dropped": {}} for name in names}
    dropped = dict.fromkeys(REASONS, 0)
    kinds: dict[str, int] = {}
    for series in done:
        kind = series.key.rstrip("0123456789")
        kinds[kind] = kinds.get(kind, 0) + 1
        for p, n in series.made.items():
            entry = per_parent.setdefault(p, {"made": 0, "dropped": {}})
            entry["made"] += n
        for p, reasons in series.dropped.items():
            entry = per_parent.setdefault(p, {"made": 0, "dropped": {}})
            for r, n in reasons.items():
                entry["dropped"][r] = entry["dropped"].get(r, 0) + n
                dropped[r] += n
    return {
        "frames_made": sum(len(x.frames) for x in done),
        "frames_dropped": sum(dropped.values()),
        "dropped": dropped,
        "per_parent": {p: per_parent[p] for p in sorted(per_parent)},
        "teacher_calls": sum(x.calls for x in done),
        "series": kinds,
        "stopped": {x.key: next(iter(x.dropped)) for x in done if x.stopped},  # series -> its parent
        "n_seeds": n_seeds,
        "parents": [name for name, _, _ in expanded],
        "guard_rails": {
            "max_force_eV_A": s.max_force_eV_A,
            "min_distance_factor": s.min_distance_factor,
            "min_distance_floor_A": MIN_DISTANCE_A,
        },
    }
