"""Batched molecular dynamics: many independent structures advanced together, one model call per step.

    from hessdistill.deployed import Runner
    from hessdistill.evaluation.batched_md import BatchedMD
    md = BatchedMD.from_atoms(student_file_or_model, atoms_list, timestep_fs=1.0, temperature_K=300,
                              friction_per_fs=0.01, seed=0)
    md.run(1000)
    md.temperatures(), md.stable, md.to_atoms()

The integrator is BAOAB Langevin (Leimkuhler & Matthews 2013): half kick (B), half drift (A), the exact
Ornstein-Uhlenbeck update of the velocities (O: v <- c v + sqrt((1 - c^2) kT / m) xi, c = exp(-gamma dt)), half
drift, new forces, half kick.  With ``friction_per_fs = 0`` the O step is the identity and BAOAB is velocity
Verlet (NVE), the same update as ASE's ``VelocityVerlet``.  Units are ASE's (Å, eV, amu, ``ase.units.fs``), so
velocities and temperatures mean the same as in ASE.  Each replica has its own random stream, drawn from ``seed``.

A replica whose energy or forces become non-finite, or whose largest force exceeds ``max_force`` (eV/Å), is
marked unstable at that step and frozen (its positions and velocities no longer change); the others go on.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units


class BatchedMD:
    def __init__(
        self,
        energy_forces,
        atoms_list,
        *,
        timestep_fs: float = 1.0,
        temperature_K: float | None = None,
        friction_per_fs: float = 0.0,
        seed: int = 0,
        max_force: float = 1e3,
        initial_temperature_K: float | None = None,
    ):
        """``energy_forces(positions (ΣN, 3)) -> (energies (M,), forces (ΣN, 3))`` for the structures in order
        (a :class:`hessdistill.deployed.Runner` built on the same structures is one).  Velocities come from the
        atoms when set, otherwise from a Maxwell-Boltzmann distribution at ``initial_temperature_K`` (default
        ``temperature_K``; zero velocities without either), with zero total momentum per replica."""
        if friction_per_fs < 0 or timestep_fs <= 0:
            raise ValueError("BatchedMD needs timestep_fs > 0 and friction_per_fs >= 0")
        if friction_per_fs > 0 and temperature_K is None:
            raise ValueError("Langevin dynamics (friction_per_fs > 0) needs temperature_K")
        self.fn = energy_forces
        self.sizes = np.array([len(a) for a in atoms_list])
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self.replica = np.repeat(np.arange(len(atoms_list)), self.sizes)
        self.templates = [a.copy() for a in atoms_list]
        self.masses = np.concatenate([a.get_masses() for a in atoms_list])[:, None]
        self.x = np.concatenate([a.positions for a in atoms_list]).astype(np.float64)
        self.dt = float(timestep_fs) * units.fs
        self.kT = None if temperature_K is None else float(temperature_K) * units.kB
        self.gamma = float(friction_per_fs) / units.fs
        self.max_force = float(max_force)
        self.rngs = [np.random.default_rng([seed, k]) for k in range(len(atoms_list))]
        t0 = initial_temperature_K if initial_temperature_K is not None else temperature_K
        v = []
        for k, a in enumerate(atoms_list):
            if np.any(a.get_velocities()):
                v.append(a.get_velocities())
            elif t0:
                m = a.get_masses()[:, None]
                vk = self.rngs[k].standard_normal((len(a), 3)) * np.sqrt(float(t0) * units.kB / m)
                vk -= (m * vk).sum(0) / m.sum()  # no drift of the centre of mass
                v.append(vk)
            else:
                v.append(np.zeros((len(a), 3)))
        self.v = np.concatenate(v)
        self.stable = np.ones(len(atoms_list), dtype=bool)
        self.failed_at = np.full(len(atoms_list), -1)
        self.steps = 0
        self.energies, self.f = self._evaluate(self.x)

    @classmethod
    def from_atoms(cls, student, atoms_list, *, skin: float = 0.5, device: str = "cpu", **kwargs):
        """Batched MD of ``student`` (exported file, checkpoint or Student) over ``atoms_list``."""
        from ..students.deployed import Runner

        runner = Runner(
            student,
            [a.numbers for a in atoms_list],
            [a.cell.array for a in atoms_list],
            [a.pbc for a in atoms_list],
            skin=skin,
            device=device,
        )
        return cls(runner, atoms_list, **kwargs)

    def _evaluate(self, x):
        energies, forces = self.fn(x)
        energies = np.asarray(energies, dtype=np.float64).reshape(-1)
        forces = np.asarray(forces, dtype=np.float64).reshape(-1, 3)
        fmax = np.zeros(len(self.sizes))
        np.maximum.at(fmax, self.replica, np.nan_to_num(np.abs(forces).max(1), nan=np.inf))
        bad = ~np.isfinite(energies) | ~(fmax <= self.max_force)
        newly = bad & self.stable
        self.failed_at[newly] = self.steps
        self.stable &= ~bad
        forces = np.where(self.stable[self.replica][:, None], forces, 0.0)
        return energies, forces

    def step(self) -> None:
        live = self.stable[self.replica][:, None]
        half = 0.5 * self.dt
        v = self.v + half * self.f / self.masses
        x = self.x + half * v
        if self.gamma > 0:
            c = np.exp(-self.gamma * self.dt)
            noise = np.concatenate([rng.standard_normal((n, 3)) for rng, n in zip(self.rngs, self.sizes)])
            v = c * v + np.sqrt((1 - c * c) * self.kT / self.masses) * noise
        x = x + half * v
        self.x = np.where(live, x, self.x)
        self.v = np.where(live, v, self.v)
        self.steps += 1
        self.energies, self.f = self._evaluate(self.x)
        self.v = np.where(self.stable[self.replica][:, None], self.v + half * self.f / self.masses, self.v)

    def run(self, steps: int, *, every: int = 0, callback=None) -> None:
        """``steps`` steps; with ``every`` > 0, ``callback(self)`` after every ``every``-th step."""
        for k in range(int(steps)):
            self.step()
            if every and callback is not None and (k + 1) % every == 0:
                callback(self)

    def kinetic_energies(self) -> np.ndarray:
        ke = 0.5 * (self.masses * self.v**2).sum(1)
        return np.bincount(self.replica, weights=ke, minlength=len(self.sizes))

    def temperatures(self) -> np.ndarray:
        """Kinetic temperature of each replica, K (3N degrees of freedom, as ASE's ``get_temperature``)."""
        return 2 * self.kinetic_energies() / (3 * self.sizes * units.kB)

    def total_energies(self) -> np.ndarray:
        return self.energies + self.kinetic_energies()

    def to_atoms(self) -> list[Atoms]:
        out = []
        for k, a in enumerate(self.templates):
            b = a.copy()
            lo, hi = self.offsets[k], self.offsets[k + 1]
            b.positions = self.x[lo:hi]
            b.set_velocities(self.v[lo:hi])
            out.append(b)
        return out
