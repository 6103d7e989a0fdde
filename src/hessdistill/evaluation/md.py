"""Molecular-dynamics stability and energy-conservation benchmarks through any ASE calculator.

Protocol (paper / official code): Maxwell-Boltzmann velocities at 300 K (seeded here), centre-of-mass
momentum removed (and, for molecules, the angular momentum), 1 fs steps, NVE velocity Verlet, or
Langevin NVT with friction 0.01 fs⁻¹.

Stability criteria (``criterion``):

``bonds`` (molecules; the paper's criterion)
    bonds are found by :func:`find_bonds` in the initial structure (covalent radii x :data:`BOND_TOLERANCE`,
    periodic images included for cells), bonds longer than ``max_bond`` Å dropped.  Reference lengths are
    ``reference_lengths`` (the paper's option: means over training frames of the same composition, see
    :func:`reference_bond_lengths`) or the initial lengths.  The run has collapsed at the first check where any |length - reference| >
    ``max_deviation`` Å (0.5 Å).
``sites`` (periodic solids; default for cells)
    a Lindemann-style site criterion.  Each atom's displacement from its initial site (unwrapped, with
    the mean displacement removed) is *averaged over a sliding window* of ``site_window_fs`` (200 fs,
    longer than the phonon periods of solids); the run has collapsed when any atom's window-averaged
    displacement exceeds ``site_fraction`` (0.5) of its initial nearest-neighbour distance, i.e. the atom
    has left its site for good (hop, melting, amorphisation, phase change).  Why this one: thermal
    vibrations average out in the window mean, so the criterion does not fire in a hot but intact crystal
    (measured for EMT Cu, 32 atoms, Langevin: window mean at most ~0.4 Å at 1200 K against a threshold of
    1.28 Å, while a liquid run at ~17000 K exceeds it within 0.2-0.3 ps), whereas per-bond deviation with 0.5 Å fires on thermal
    noise within ~30 fs at 1200 K in the same crystal, and RDF distances grow steadily with temperature
    (see ``rdf``), so their threshold is temperature-dependent.  It needs no reference data, is local
    (names the atom that left its site) and scales to any cell; its blind spot is a collective
    transformation in which every atom moves by less than half a neighbour distance (e.g. a martensitic
    shear), which the energy/temperature series or ``rdf`` should be used to catch.  The reported time to
    collapse is the detection time, which lags the departure from the site by up to one window.
``rdf``
    normalised L1 distance ∫|g - g_ref| dr / ∫ g_ref dr between the RDF averaged over a sliding window
    of ``rdf_window_fs`` and a reference RDF, both Gaussian-smeared with ``rdf_sigma`` (0.2 Å); collapse
    when above ``rdf_threshold`` (0.3).  The reference is ``reference_rdf`` (e.g. from teacher MD or
    training frames, on :func:`rdf_grid`) or, by default, the smeared RDF of the initial structure.  The
    smearing absorbs part of the thermal broadening, but the distance still grows with temperature
    (measured, EMT Cu, 16 atoms, NVT: 0.06 at 300 K, 0.19 at 1200 K, 0.33 at 3000 K, 0.63 for a hot
    liquid), so the threshold must be chosen for the temperature; prefer ``sites`` for crystals.
``auto``
    ``bonds`` for molecules, ``sites`` for periodic structures.

Explosions are always checked, every step, and always stop the run: a calculator exception, NaN/inf
energy, forces or positions, max |F| > ``max_force_eV_A`` or any displacement > ``max_displacement_A``.
They are reported as unstable with the reason; nothing is raised.

Energy conservation (NVE): from E_tot per atom logged every ``log_every`` steps — drift = slope of a
linear fit vs time (meV/atom/ps), fluctuation = standard deviation (meV/atom), and max |E_tot(t) -
E_tot(0)| per atom (meV/atom).  Drift and fluctuation are reported only over at least ``min_energy_frames``
frames spanning ``min_energy_window_ps`` (0.5 ps), and not for a run stopped by a collapse or explosion (its
time to collapse is the result); otherwise they are None and ``energy_stats_note`` gives the reason.
Suites average drifts over stable runs only and give mean, standard error and n (:func:`mean_sem`).
"""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np
from ase import units

CRITERIA = ("bonds", "sites", "rdf", "auto")
ENSEMBLES = ("nve", "nvt")


# ----------------------------------------------------------------------------------------- bonds


#: Bond tolerance: a pair is bonded when shorter than BOND_TOLERANCE x the sum of the covalent radii (ASE's
#: Cordero radii).  Measured on ASE's g2 molecules: every chemical bond has d / (r_i + r_j) <= 1.25 (F2, the
#: longest relative to its radii; C-H and C-C sit at 1.03-1.07, above the plain sum), every non-bonded pair
#: >= 1.38 (cross-ring C...C in cyclobutene); 1.3 sits in that gap.  The common 1.2 misses F2.
BOND_TOLERANCE = 1.3
#: Elements counted as non-metals (metalloids included) by :func:`find_bonds`.
NONMETALS = frozenset("H He B C N O F Ne Si P S Cl Ar Ge As Se Br Kr Sb Te I Xe At Rn".split())


def find_bonds(
    atoms, *, max_bond: float = 5.0, mult: float = BOND_TOLERANCE
) -> list[tuple[int, int, tuple[int, int, int]]]:
    """Bonded pairs ``(i, j, shift)`` (each pair once; ``shift`` is the cell image of j, periodic images included).

    A pair is bonded when d < ``mult`` (r_i + r_j) with covalent radii r (see :data:`BOND_TOLERANCE`), except
    metal-metal pairs in a structure that contains non-metals (the Sr-Ti and Ti-Ti contacts of a perovskite are
    not bonds; in a pure metal or alloy they are).  Pairs longer than ``max_bond`` Å are dropped.
    """
    from ase.neighborlist import natural_cutoffs, neighbor_list

    if len(atoms) < 2 and not np.any(atoms.pbc):
        return []
    symbols = atoms.get_chemical_symbols()
    metal = np.array([s not in NONMETALS for s in symbols])
    skip_metal_pairs = not metal.all()
    ii, jj, ss, dd = neighbor_list("ijSd", atoms, natural_cutoffs(atoms, mult=mult), self_interaction=False)
    out = []
    for i, j, s, d in zip(ii, jj, ss, dd):
        s = tuple(int(x) for x in s)
        if d > max_bond or (skip_metal_pairs and metal[i] and metal[j]):
            continue
        if i < j or (i == j and s > (0, 0, 0)):
            out.append((int(i), int(j), s))
    return out


def bond_lengths(positions, cell, bonds) -> np.ndarray:
    """Lengths of ``bonds`` for (unwrapped) positions: |r_j + shift·cell - r_i|."""
    if not bonds:
        return np.zeros(0)
    pos = np.asarray(positions, dtype=np.float64)
    i = np.array([b[0] for b in bonds])
    j = np.array([b[1] for b in bonds])
    s = np.array([b[2] for b in bonds], dtype=np.float64)
    vec = pos[j] + s @ np.asarray(cell, dtype=np.float64) - pos[i]
    return np.sqrt((vec**2).sum(axis=1))


def reference_bond_lengths(frames, bonds) -> list[float]:
    """Mean length of each bond over ``frames`` (e.g. the training frames of the same composition).

    Molecules: plain distances.  Periodic frames: minimum-image distances (frames may be wrapped)."""
    from ase.geometry import find_mic

    acc = np.zeros(len(bonds))
    n = 0
    i = np.array([b[0] for b in bonds], dtype=int)
    j = np.array([b[1] for b in bonds], dtype=int)
    for fr in frames:
        pos = fr.get_positions()
        if np.any(fr.pbc):
            _, d = find_mic(pos[j] - pos[i], fr.cell, fr.pbc)
        else:
            d = np.linalg.norm(pos[j] - pos[i], axis=1)
        acc += d
        n += 1
    if n == 0:
        raise ValueError("reference_bond_lengths needs at least one frame")
    return [float(x) for x in acc / n]


def training_reference(start, frames, bonds):
    """The paper's reference bond lengths for an MD run from ``start``: the mean over the ``frames`` (training
    structures) of the same composition, atom for atom (same atomic numbers in the same order, same periodicity
    and cell size), so that every bond of ``start`` is the same pair in each frame.  Returns (lengths, number of
    frames used); (None, 0) when no frame matches (then the run keeps the lengths of its start structure)."""
    same = [
        f
        for f in frames
        if len(f) == len(start)
        and np.array_equal(f.numbers, start.numbers)
        and np.array_equal(f.pbc, start.pbc)
        and (not np.any(start.pbc) or np.allclose(f.cell.lengths(), start.cell.lengths(), rtol=0.1))
    ]
    if not same or not bonds:
        return None, 0
    return reference_bond_lengths(same, bonds), len(same)


# ------------------------------------------------------------------------------------------- RDF


def rdf_grid(rmax: float = 6.0, nbins: int = 120) -> np.ndarray:
    return np.linspace(0.0, rmax, nbins + 1)[1:]


def smeared_rdf(atoms, *, rmax: float = 6.0, nbins: int = 120, sigma: float = 0.2) -> np.ndarray:
    """Gaussian-smeared radial distribution function g(r) on :func:`rdf_grid` (periodic images included)."""
    from ase.neighborlist import neighbor_list

    r = rdf_grid(rmax, nbins)
    d = neighbor_list("d", atoms, rmax + 4.0 * sigma)
    g = np.exp(-0.5 * ((r[:, None] - d[None, :]) / sigma) ** 2).sum(axis=1) / (sigma * math.sqrt(2.0 * math.pi))
    n = len(atoms)
    vol = atoms.get_volume() if np.all(atoms.pbc) else 1.0
    rho = n / vol
    return g / (4.0 * math.pi * r**2 * rho * n)


def rdf_distance(g, g_ref) -> float:
    """Normalised L1 distance ∫|g - g_ref| dr / ∫ g_ref dr."""
    den = float(np.sum(np.abs(g_ref))) or 1.0
    return float(np.sum(np.abs(np.asarray(g) - np.asarray(g_ref))) / den)


# -------------------------------------------------------------------------------------- monitors


class _BondMonitor:
    name = "bond_deviation"
    unit = "A"

    def __init__(self, atoms, bonds, reference_lengths, max_deviation, max_bond):
        self.bonds = list(bonds) if bonds is not None else find_bonds(atoms, max_bond=max_bond)
        self.cell = np.array(atoms.cell)
        if reference_lengths is None:
            self.ref = bond_lengths(atoms.get_positions(), self.cell, self.bonds)
        else:
            self.ref = np.asarray(reference_lengths, dtype=np.float64).reshape(-1)
            if self.ref.size != len(self.bonds):
                raise ValueError(
                    f"{self.ref.size} reference lengths for {len(self.bonds)} bonds; pass bonds= "
                    "together with reference_lengths=, or compute both with find_bonds/reference_bond_lengths"
                )
        keep = self.ref <= max_bond
        self.bonds = [b for b, k in zip(self.bonds, keep) if k]
        self.ref = self.ref[keep]
        self.threshold = float(max_deviation)

    def check(self, atoms):
        if not self.bonds:
            return False, 0.0
        dev = float(np.abs(bond_lengths(atoms.get_positions(), self.cell, self.bonds) - self.ref).max())
        return dev > self.threshold, dev


class _SiteMonitor:
    name = "site_displacement"
    unit = "A"

    def __init__(self, atoms, window_checks, fraction):
        from ase.neighborlist import neighbor_list

        self.r0 = atoms.get_positions().copy()
        n = len(atoms)
        nn = np.full(n, np.inf)
        if n > 1 or np.any(atoms.pbc):
            i, d = neighbor_list("id", atoms, 8.0)
            np.minimum.at(nn, i, d)
        self.threshold_per_atom = fraction * nn
        self.threshold = float(np.min(self.threshold_per_atom)) if n else 0.0
        self.window = deque(maxlen=max(1, int(window_checks)))

    def check(self, atoms, final=False):
        u = atoms.get_positions() - self.r0
        u -= u.mean(axis=0)
        self.window.append(u)
        mean_u = np.mean(self.window, axis=0)
        disp = np.sqrt((mean_u**2).sum(axis=1))
        value = float(disp.max()) if disp.size else 0.0
        judged = len(self.window) == self.window.maxlen or final
        return bool(judged and np.any(disp > self.threshold_per_atom)), value


class _RDFMonitor:
    name = "rdf_deviation"
    unit = ""

    def __init__(self, atoms, window_checks, threshold, reference_rdf, rmax, nbins, sigma):
        self.kw = {"rmax": rmax, "nbins": nbins, "sigma": sigma}
        self.window = deque(maxlen=max(1, int(window_checks)))
        if reference_rdf is None:
            self.ref = smeared_rdf(atoms, **self.kw)
        else:
            self.ref = np.asarray(reference_rdf, dtype=np.float64)
            if self.ref.shape != (nbins,):
                raise ValueError(
                    f"reference_rdf has shape {self.ref.shape}; expected ({nbins},) on rdf_grid(rmax, nbins)"
                )
        self.threshold = float(threshold)

    def check(self, atoms, final=False):
        self.window.append(smeared_rdf(atoms, **self.kw))
        value = rdf_distance(np.mean(self.window, axis=0), self.ref)
        judged = len(self.window) == self.window.maxlen or final
        return bool(judged and value > self.threshold), value


# ------------------------------------------------------------------------------------------- MD


def _thermalize(atoms, temperature_K, rng):
    try:
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # ASE < 3.29
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as _mb

        _mb(atoms, temperature_K=temperature_K, rng=rng)
        return
    thermalize_momenta(atoms, temperature_K, rng=rng)


def _remove_drift(atoms, periodic):
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    n = len(atoms)
    if n < 2:
        return
    Stationary(atoms)
    if not periodic and n > 2:
        ip = atoms.get_moments_of_inertia()
        if np.all(ip > 1e-8 * max(float(ip.max()), 1e-300)):  # skip linear molecules (singular inertia)
            ZeroRotation(atoms)


def initial_velocities(atoms, temperature_K: float, rng) -> None:
    """The start of every MD protocol, in place: Maxwell-Boltzmann velocities at ``temperature_K`` drawn from ``rng``,
    the centre-of-mass momentum removed and, for molecules, the angular momentum."""
    _thermalize(atoms, temperature_K, rng)
    _remove_drift(atoms, bool(np.any(atoms.pbc)))


def start_dynamics(atoms, ensemble: str, temperature_K: float, timestep_fs: float, friction_per_fs: float, seed: int):
    """The integrator of the MD protocols, started in place: :func:`initial_velocities` from the stream
    ``[seed, 0]``, then velocity Verlet (``ensemble`` "nve") or Langevin with the stream ``[seed, 1]`` and the
    centre of mass fixed by a ``FixCom`` constraint added to ``atoms`` (so that the forces the calculator returns
    are the model's own)."""
    from ase.md.langevin import Langevin
    from ase.md.verlet import VelocityVerlet

    initial_velocities(atoms, temperature_K, np.random.default_rng([int(seed), 0]))
    if ensemble == "nve":
        return VelocityVerlet(atoms, timestep_fs * units.fs, logfile=None)
    from ase.constraints import FixCom

    atoms.set_constraint(list(atoms.constraints) + [FixCom()])
    return Langevin(
        atoms,
        timestep_fs * units.fs,
        temperature_K=temperature_K,
        friction=friction_per_fs / units.fs,
        fixcm=False,
        rng=np.random.default_rng([int(seed), 1]),
    )


def _energy_stats(t_ps, etot_per_atom_eV, *, min_frames: int, min_window_ps: float) -> dict:
    """Drift (slope of a linear fit), fluctuation (std) and max |E - E(0)| of E_tot per atom.

    Drift and fluctuation need at least ``min_frames`` logged frames spanning ``min_window_ps``; otherwise they
    are None and ``energy_stats_note`` says why (a slope over a few fs, quoted per ps, is an extrapolation)."""
    t = np.asarray(t_ps, dtype=np.float64)
    e = np.asarray(etot_per_atom_eV, dtype=np.float64) * 1000.0
    out = {
        "drift_meV_atom_ps": None,
        "fluctuation_meV_atom": None,
        "max_abs_dE_meV_atom": None,
        "energy_window_ps": float(t[-1] - t[0]) if t.size else 0.0,
        "energy_frames": int(e.size),
        "energy_stats_note": None,
    }
    if e.size == 0 or not np.all(np.isfinite(e)):
        out["energy_stats_note"] = "no finite energies logged"
        return out
    out["max_abs_dE_meV_atom"] = float(np.abs(e - e[0]).max())
    if e.size < min_frames or out["energy_window_ps"] < min_window_ps - 1e-12:
        out["energy_stats_note"] = (
            f"{e.size} frames over {out['energy_window_ps']:.3g} ps; drift and fluctuation "
            f"need >= {min_frames} frames over >= {min_window_ps:g} ps"
        )
        return out
    out["fluctuation_meV_atom"] = float(e.std())
    out["drift_meV_atom_ps"] = float(np.polyfit(t, e, 1)[0])
    return out


def mean_sem(values) -> dict:
    """``{"mean", "se", "n"}`` over the non-None values: the standard error of the mean is s/sqrt(n) with the
    sample standard deviation (ddof=1); None where undefined (no value; a single value has no s.e.)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    n = int(v.size)
    return {
        "mean": float(v.mean()) if n else None,
        "se": float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else None,
        "n": n,
    }


def _downsample(series: dict, max_points: int) -> dict:
    n = len(series["time_ps"])
    if max_points is None or n <= max_points:
        idx = np.arange(n)
    else:
        idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return {k: [None if v[i] is None else float(v[i]) for i in idx] for k, v in series.items()}


def run_md(
    atoms,
    calc,
    *,
    ensemble: str = "nve",
    temperature_K: float = 300.0,
    timestep_fs: float = 1.0,
    steps: int = 1000,
    friction_per_fs: float = 0.01,
    seed: int = 0,
    log_every: int = 10,
    check_every: int = 1,
    bonds=None,
    reference_lengths=None,
    max_deviation: float = 0.5,
    max_bond: float = 5.0,
    stop_on_collapse: bool = True,
    criterion: str = "auto",
    site_window_fs: float = 200.0,
    site_fraction: float = 0.5,
    rdf_window_fs: float = 200.0,
    rdf_threshold: float = 0.3,
    reference_rdf=None,
    rdf_rmax: float = 6.0,
    rdf_nbins: int = 120,
    rdf_sigma: float = 0.2,
    max_force_eV_A: float = 1.0e3,
    max_displacement_A: float = 50.0,
    max_series_points: int = 2000,
    min_energy_frames: int = 10,
    min_energy_window_ps: float = 0.5,
) -> dict:
    """Run MD of a copy of ``atoms`` with ``calc`` and report stability and energy conservation.

    Never raises because of the model (calculator exceptions and NaNs are results); raises ``ValueError``
    only for bad arguments.  See the module docstring for the criteria.
    """

    ensemble = ensemble.lower()
    if ensemble not in ENSEMBLES:
        raise ValueError(f"unknown ensemble {ensemble!r}; choose one of {ENSEMBLES}")
    if criterion not in CRITERIA:
        raise ValueError(f"unknown stability criterion {criterion!r}; choose one of {CRITERIA}")
    if steps < 0 or log_every < 1 or check_every < 1 or timestep_fs <= 0:
        raise ValueError("steps must be >= 0, log_every and check_every >= 1, timestep_fs > 0")

    work = atoms.copy()
    work.calc = calc
    n = len(work)
    periodic = bool(np.any(work.pbc))
    crit = criterion if criterion != "auto" else ("sites" if periodic else "bonds")
    dt_ps = timestep_fs * 1e-3
    check_fs = check_every * timestep_fs
    if crit == "bonds":
        monitor = _BondMonitor(work, bonds, reference_lengths, max_deviation, max_bond)
    elif crit == "sites":
        monitor = _SiteMonitor(
            work, math.ceil(site_window_fs / check_fs) + 1, site_fraction
        )  # frames spanning the window
    else:
        monitor = _RDFMonitor(
            work, math.ceil(rdf_window_fs / check_fs) + 1, rdf_threshold, reference_rdf, rdf_rmax, rdf_nbins, rdf_sigma
        )

    dyn = start_dynamics(work, ensemble, temperature_K, timestep_fs, friction_per_fs, seed)
    r_start = work.get_positions().copy()

    series = {
        "time_ps": [],
        "etot_eV_atom": [],
        "epot_eV_atom": [],
        "ekin_eV_atom": [],
        "temperature_K": [],
        "stability_metric": [],
    }
    state = {
        "exploded": False,
        "collapsed": False,
        "reason": None,
        "detail": None,
        "time_to_collapse_ps": None,
        "max_metric": 0.0,
        "last_metric": None,
    }

    def explode(reason, detail, step):
        state.update(exploded=True, reason=reason, detail=detail, time_to_collapse_ps=float(step * dt_ps))

    def sane(forces, step) -> bool:
        f = np.asarray(forces, dtype=np.float64)
        pos = work.get_positions()
        if not (np.all(np.isfinite(f)) and np.all(np.isfinite(pos))):
            explode("nonfinite", "NaN or inf in forces or positions", step)
            return False
        fm = float(np.sqrt((f**2).sum(axis=1)).max()) if n else 0.0
        if fm > max_force_eV_A:
            explode("force_too_large", f"max |F| = {fm:.3g} eV/Å > {max_force_eV_A:g}", step)
            return False
        dmax = float(np.sqrt(((pos - r_start) ** 2).sum(axis=1)).max()) if n else 0.0
        if dmax > max_displacement_A:
            explode("displacement_too_large", f"an atom moved {dmax:.3g} Å > {max_displacement_A:g}", step)
            return False
        return True

    def log(step) -> bool:
        try:
            epot = float(work.get_potential_energy())
        except Exception as exc:  # noqa: BLE001
            explode("calculator_error", f"{type(exc).__name__}: {str(exc)[:300]}", step)
            return False
        if not math.isfinite(epot):
            explode("nonfinite", "NaN or inf potential energy", step)
            return False
        ekin = float(work.get_kinetic_energy())
        series["time_ps"].append(step * dt_ps)
        series["epot_eV_atom"].append(epot / n)
        series["ekin_eV_atom"].append(ekin / n)
        series["etot_eV_atom"].append((epot + ekin) / n)
        series["temperature_K"].append(float(work.get_temperature()) if n else 0.0)
        series["stability_metric"].append(state["last_metric"])
        return True

    def check(step, final=False):
        if crit == "bonds":
            collapsed, value = monitor.check(work)
        else:
            collapsed, value = monitor.check(work, final=final)
        state["last_metric"] = value
        state["max_metric"] = max(state["max_metric"], value)
        if collapsed and not state["collapsed"]:
            state.update(
                collapsed=True,
                reason=monitor.name,
                time_to_collapse_ps=float(step * dt_ps),
                detail=f"{monitor.name} {value:.3g} > {monitor.threshold:.3g}",
            )

    t0 = time.perf_counter()
    steps_done = 0
    forces = None
    try:
        forces = work.get_forces(md=True)
    except Exception as exc:  # noqa: BLE001
        explode("calculator_error", f"{type(exc).__name__}: {str(exc)[:300]}", 0)
    if not state["exploded"] and sane(forces, 0):
        check(0)
        log(0)
    for step in range(1, steps + 1):
        if state["exploded"] or (state["collapsed"] and stop_on_collapse):
            break
        try:
            forces = dyn.step(forces)
        except Exception as exc:  # noqa: BLE001
            explode("calculator_error", f"{type(exc).__name__}: {str(exc)[:300]}", step)
            break
        steps_done = step
        if not sane(forces, step):
            break
        if step % check_every == 0 or step == steps:
            check(step, final=step == steps)
        if step % log_every == 0 or step == steps or (state["collapsed"] and stop_on_collapse):
            if not log(step):
                break
    wall = time.perf_counter() - t0

    stable = not (state["exploded"] or state["collapsed"])
    out = {
        "ensemble": ensemble,
        "temperature_K": float(temperature_K),
        "timestep_fs": float(timestep_fs),
        "friction_per_fs": float(friction_per_fs) if ensemble == "nvt" else None,
        "seed": int(seed),
        "n_atoms": n,
        "formula": work.get_chemical_formula(),
        "periodic": periodic,
        "criterion": crit,
        "criterion_threshold": float(monitor.threshold),
        "n_bonds": len(monitor.bonds) if crit == "bonds" else None,
        "steps_requested": int(steps),
        "steps_completed": int(steps_done),
        "simulated_time_ps": float(steps_done * dt_ps),
        "stable": bool(stable),
        "collapsed": bool(state["collapsed"]),
        "exploded": bool(state["exploded"]),
        "reason": state["reason"],
        "detail": state["detail"],
        "time_to_collapse_ps": state["time_to_collapse_ps"],
        "max_stability_metric": float(state["max_metric"]),
        "wall_s": float(wall),
        "mean_temperature_K": float(np.mean(series["temperature_K"])) if series["temperature_K"] else None,
    }
    stats = _energy_stats(
        series["time_ps"], series["etot_eV_atom"], min_frames=min_energy_frames, min_window_ps=min_energy_window_ps
    )
    drift_keys = ("drift_meV_atom_ps", "fluctuation_meV_atom", "max_abs_dE_meV_atom")
    if ensemble != "nve":  # drift of E_tot is not a conservation measure under a thermostat
        stats.update({k: None for k in drift_keys}, energy_stats_note="NVT: energy is not conserved")
    elif state["exploded"] or (state["collapsed"] and stop_on_collapse):
        stats.update(
            {k: None for k in drift_keys[:2]},
            energy_stats_note=f"run ended at {state['time_to_collapse_ps']:.4g} ps ({state['reason']}): "
            "time to collapse reported instead of a drift",
        )
    out.update(stats)
    out["series"] = _downsample(series, max_series_points)
    return out


def md_stability_suite(
    structures, calc, *, reference_lengths=None, bonds=None, keep_series: bool = False, **kw
) -> dict:
    """Run :func:`run_md` on each structure and aggregate.

    ``reference_lengths`` / ``bonds``: None or one entry per structure (for the paper's option, mean lengths over
    training frames of the same composition, see :func:`reference_bond_lengths`).  Aggregates: fraction stable,
    mean time to collapse (over collapsed runs), mean survival time (time to collapse, or the run length for
    stable runs), NVE |drift| and max |dE| over *stable* runs that produced them; each mean comes with its
    standard error (``*_se``) and count (``*_n``).
    """
    structures = list(structures)
    runs = []
    for k, s in enumerate(structures):
        r = run_md(
            s,
            calc,
            reference_lengths=None if reference_lengths is None else reference_lengths[k],
            bonds=None if bonds is None else bonds[k],
            **kw,
        )
        r["index"] = k
        if not keep_series:
            r.pop("series", None)
        runs.append(r)
    n = len(runs)
    stable = [r for r in runs if r["stable"]]
    # (key prefix, unit suffix, values): written as prefix+unit (mean), prefix_se+unit and prefix_n
    stats = [
        ("mean_time_to_collapse", "_ps", [r["time_to_collapse_ps"] for r in runs if not r["stable"]]),
        (
            "mean_survival_time",
            "_ps",
            [r["simulated_time_ps"] if r["stable"] else r["time_to_collapse_ps"] for r in runs],
        ),
        (
            "mean_abs_drift",
            "_meV_atom_ps",
            [abs(r["drift_meV_atom_ps"]) for r in stable if r.get("drift_meV_atom_ps") is not None],
        ),
        ("mean_max_abs_dE", "_meV_atom", [r.get("max_abs_dE_meV_atom") for r in stable]),
    ]
    reasons: dict[str, int] = {}
    for r in runs:
        if not r["stable"]:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    drifts = stats[2][2]
    out = {
        "n_structures": n,
        "n_stable": len(stable),
        "fraction_stable": len(stable) / n if n else None,
        "unstable_reasons": reasons,
        "max_abs_drift_meV_atom_ps": max(drifts) if drifts else None,
    }
    for prefix, unit, values in stats:
        st = mean_sem(values)
        out.update({f"{prefix}{unit}": st["mean"], f"{prefix}_se{unit}": st["se"], f"{prefix}_n": st["n"]})
    out["runs"] = runs
    return out
