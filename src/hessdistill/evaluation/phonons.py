"""Phonons of crystals: the student's band structure, density of states and mesh frequencies against the teacher's.

Protocol for one periodic structure (``phonon_comparison``):

1. idealize the structure to its primitive cell at tolerance ``symmetrize`` (Å), relax the atomic positions with
   the teacher at fixed cell (the phonons of a minimum; a strained cell stays strained), then find its symmetry
   (spglib through phonopy, ``symprec``);
2. build phonopy's supercell (the smallest diagonal repetition whose three lengths are at least
   ``min_supercell_length`` Å) and its symmetry-reduced finite displacements (``displacement`` Å, ± pairs); the
   *same* displaced supercells are given to the teacher and to the model, so their force constants differ only by
   the models;
3. frequencies on a Γ-centred ``mesh`` (all q, all branches: ``freq_mae_cm1``, relative to the teacher's mean
   |frequency|, and ``n_imaginary`` = mesh frequencies below -``imaginary_tol_cm1``, ``n_spurious_imaginary`` the
   model's beyond the teacher's), the band structure along seekpath's path and the total DOS (kept for figures).

Frequencies are in cm⁻¹ (phonopy's THz x 33.35641), imaginary as negative numbers.
"""

from __future__ import annotations

import numpy as np

THZ_TO_CM1 = 33.35640951981521


def _phonopy_atoms(atoms):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=np.asarray(atoms.cell.array),
        scaled_positions=atoms.get_scaled_positions(),
    )


def supercell_repeats(atoms, min_length: float) -> list[int]:
    """Diagonal repetition with every supercell length >= ``min_length`` Å (at least 1)."""
    return [max(1, int(np.ceil(min_length / float(length)))) for length in atoms.cell.lengths()]


def supercell_atoms(sc):
    """An ASE structure from a phonopy supercell, atom for atom in phonopy's order (all images of primitive atom
    0, then of atom 1, ...: not the order of ``Atoms.repeat``, so species must come from ``sc`` itself)."""
    from ase import Atoms

    return Atoms(
        symbols=list(sc.symbols), cell=np.asarray(sc.cell), scaled_positions=np.asarray(sc.scaled_positions), pbc=True
    )


def _forces(calc, supercells):
    out = []
    for sc in supercells:
        a = supercell_atoms(sc)
        a.calc = calc
        out.append(np.asarray(a.get_forces(), dtype=np.float64))
    return out


def force_constants(atoms, calc, reps, *, displacement: float = 0.01, symprec: float = 1e-3):
    """A phonopy object with the force constants of ``calc`` for ``atoms`` in a diag(``reps``) supercell (finite
    displacements, plus and minus; the same displacements for every calculator given the same cell)."""
    from phonopy import Phonopy

    ph = Phonopy(_phonopy_atoms(atoms), supercell_matrix=np.diag(reps), symprec=symprec)
    ph.generate_displacements(distance=displacement, is_plusminus=True)
    ph.forces = _forces(calc, ph.supercells_with_displacements)
    ph.produce_force_constants()
    return ph


def _collect(ph, mesh, band_points):
    ph.run_mesh(mesh, with_eigenvectors=False, is_mesh_symmetry=False)
    freqs = np.asarray(ph.get_mesh_dict()["frequencies"]) * THZ_TO_CM1  # (n_q, n_branches)
    ph.auto_band_structure(npoints=band_points, with_eigenvectors=False, plot=False)
    bands = ph.get_band_structure_dict()
    ph.run_total_dos()
    dos = ph.get_total_dos_dict()
    return (
        freqs,
        {
            "distances": [np.asarray(d).tolist() for d in bands["distances"]],
            "frequencies_cm1": [(np.asarray(f) * THZ_TO_CM1).tolist() for f in bands["frequencies"]],
            "labels": list(getattr(ph.band_structure, "labels", None) or []),
            "connections": [bool(c) for c in getattr(ph.band_structure, "path_connections", None) or []],
        },
        {
            "frequency_cm1": (np.asarray(dos["frequency_points"]) * THZ_TO_CM1).tolist(),
            "dos": np.asarray(dos["total_dos"]).tolist(),
        },
    )


def idealized(atoms, symprec: float):
    """The standardized primitive cell of ``atoms`` with its symmetry found at tolerance ``symprec`` (Å) and
    imposed (spglib); ``atoms`` itself when spglib finds nothing."""
    import spglib
    from ase import Atoms

    cell = (np.asarray(atoms.cell.array), atoms.get_scaled_positions(), atoms.numbers)
    std = spglib.standardize_cell(cell, to_primitive=True, no_idealize=False, symprec=symprec)
    if std is None:
        return atoms.copy()
    lattice, scaled, numbers = std
    return Atoms(numbers=numbers, cell=lattice, scaled_positions=scaled, pbc=True)


def phonon_structures(atoms, n: int) -> list:
    """Up to ``n`` crystals for phonons: the smallest cell of each composition first (distinct compounds before
    more cells of the same one), fully periodic structures only."""
    crystals = sorted((a for a in atoms if a.pbc.all()), key=len)
    first, rest, seen = [], [], set()
    for a in crystals:
        key = a.get_chemical_formula(mode="reduce")
        (rest if key in seen else first).append(a)
        seen.add(key)
    return (first + rest)[:n]


def phonon_comparison(
    atoms,
    model_calc,
    teacher_calc,
    *,
    relax: bool = True,
    fmax: float = 1e-3,
    max_steps: int = 500,
    min_supercell_length: float = 8.0,
    displacement: float = 0.01,
    mesh=(8, 8, 8),
    band_points: int = 31,
    symprec: float = 1e-3,
    symmetrize: float = 0.1,
    imaginary_tol_cm1: float = 20.0,
) -> dict:
    """Model vs teacher phonons of one crystal (see the module docstring); never raises for a failed teacher
    relaxation (reported in ``error``).  ``symmetrize`` > 0: the structure is first replaced by its idealized
    primitive cell at that tolerance (Å; a thermal or rattled frame of a cubic perovskite becomes the cubic cell,
    a strained one the tetragonal cell), so that the phonons are those of the crystal, not of one snapshot."""
    from .vibrations import relax_structure

    if not np.all(atoms.pbc):
        return {"error": "phonons need a structure periodic in all three directions", "n_atoms": len(atoms)}
    info = {"converged": None, "steps": 0, "error": None}
    work = idealized(atoms, symmetrize) if symmetrize > 0 else atoms.copy()
    atoms = work
    if relax:
        work, info = relax_structure(atoms, teacher_calc, fmax=fmax, max_steps=max_steps)
    out = {
        "n_atoms": len(atoms),
        "formula": atoms.get_chemical_formula(),
        "teacher_relax_converged": info["converged"],
        "teacher_relax_steps": info["steps"],
        "error": None,
    }
    if info.get("error"):
        out["error"] = f"teacher relaxation failed: {info['error']}"
        return out
    plain = work.copy()
    plain.calc = None
    reps = supercell_repeats(plain, min_supercell_length)
    phs = {
        name: force_constants(plain, calc, reps, displacement=displacement, symprec=symprec)
        for name, calc in (("teacher", teacher_calc), ("model", model_calc))
    }
    ft, bands_t, dos_t = _collect(phs["teacher"], mesh, band_points)
    fm, bands_m, dos_m = _collect(phs["model"], mesh, band_points)
    diff = np.abs(fm - ft)
    mean_t = float(np.abs(ft).mean())
    n_im, n_it = int(np.sum(fm < -imaginary_tol_cm1)), int(np.sum(ft < -imaginary_tol_cm1))
    out.update(
        {
            "spacegroup": phs["teacher"].symmetry.get_international_table(),
            "supercell": reps,
            "n_displacements": len(phs["teacher"].supercells_with_displacements),
            "mesh": list(mesh),
            "freq_mae_cm1": float(diff.mean()),
            "freq_max_abs_cm1": float(diff.max()),
            "teacher_mean_freq_cm1": mean_t,
            "freq_mae_rel": float(diff.mean() / mean_t) if mean_t > 0 else None,
            "n_imaginary_model": n_im,
            "n_imaginary_teacher": n_it,
            "n_spurious_imaginary": max(0, n_im - n_it),
            "imaginary_tol_cm1": float(imaginary_tol_cm1),
            "bands": {"teacher": bands_t, "model": bands_m},
            "dos": {"teacher": dos_t, "model": dos_m},
        }
    )
    return out


def phonon_suite(runs) -> dict:
    """Mean ± s.e. over crystals of the mesh frequency MAE (absolute and relative) and the spurious imaginary
    mesh frequencies."""
    from .md import mean_sem

    ok = [r for r in runs if not r.get("error")]
    mae, rel = mean_sem([r["freq_mae_cm1"] for r in ok]), mean_sem([r["freq_mae_rel"] for r in ok])
    return {
        "freq_mae_cm1": mae["mean"],
        "freq_mae_se_cm1": mae["se"],
        "freq_mae_n": mae["n"],
        "freq_mae_rel": rel["mean"],
        "freq_mae_rel_se": rel["se"],
        "n_spurious_imaginary": sum(r["n_spurious_imaginary"] for r in ok),
        "n_structures_with_spurious_imaginary": sum(1 for r in ok if r["n_spurious_imaginary"] > 0),
        "n_structures": len(runs),
        "n_failed": len(runs) - len(ok),
    }
