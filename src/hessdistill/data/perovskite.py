"""Perovskite geometry: whether a structure is an ABX3 perovskite (corner-sharing BX6 octahedra), for the
``perovskite`` selector of :mod:`hessdistill.data.subsets`."""

from __future__ import annotations

import math
from collections import Counter
from functools import reduce

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

__all__ = ["DEFAULT_ANIONS", "is_perovskite", "perovskite_check"]

#: the anions X accepted by the perovskite rule by default
DEFAULT_ANIONS = ("O", "F", "Cl", "Br", "I", "S", "N")


def perovskite_check(
    atoms: Atoms,
    *,
    cubic_only: bool = False,
    anions=DEFAULT_ANIONS,
    bond_tol: float = 0.4,
    a_site_tol: float = 0.35,
    a_site_coordination=(8, 12),
    octahedron_angle_tol: float = 30.0,
    link_angle_tol: float = 40.0,
    cubic_length_tol: float = 0.02,
    cubic_angle_tol: float = 5.0,
    symmetry: str = "geometric",
    symprec: float = 0.01,
) -> tuple[bool, str]:
    """Whether ``atoms`` is an ABX3 perovskite, and why (or why not).

    The rule (every step must pass; distances in the minimum-image sense over all periodic images, so
    supercells, Z > 1 cells and distorted/tilted perovskites are handled the same way):

    1. **Periodic** in all three directions.
    2. **Composition** reduces to A1 B1 X3: exactly three elements with counts in ratio 1:1:3 and the
       3-fold element X in ``anions`` (default O, F, Cl, Br, I, S, N).  Which cation is B is decided
       geometrically (both assignments are tried).
    3. **BX6 octahedra**: every B has exactly 6 X within ``(1 + bond_tol) * d_min`` (``d_min``: that B's
       shortest B-X distance; bond_tol 0.4 admits off-centred B as in PbTiO3, while the second X shell
       of a perovskite B lies beyond 2 d_min), and they form an octahedron: for each B-X bond exactly one
       other is trans (angle >= 180 - ``octahedron_angle_tol``) and four are cis (90 ± the tolerance).
    4. **Corner sharing**: every X is bonded (by step 3) to exactly 2 B (with 1:3 stoichiometry this
       makes every octahedron share all 6 corners), and each B-X-B angle is >= 180 - ``link_angle_tol``
       (default 140°: the tilted GdFeO3/CaTiO3/MgSiO3 family passes; edge- or face-sharing
       frameworks such as ilmenite FeTiO3 or hexagonal 2H-BaNiO3 have 80-100° and fail).
    5. **A site**: every A has ``a_site_coordination`` (default 8-12) X within ``(1 + a_site_tol) * d_min(A)``
       (12 in the cubic cuboctahedral cavity, about 8-10 in tilted perovskites; 6 in ilmenite/LiNbO3-type).

    ``cubic_only`` additionally requires the undistorted cubic aristotype (Pm-3m).  With
    ``symmetry="geometric"`` (default; the same answer whatever is installed): all B-X lengths within
    ``cubic_length_tol`` (relative) of their mean, cis X-B-X angles 90 ± ``cubic_angle_tol`` and trans and
    B-X-B angles >= 180 - ``cubic_angle_tol``, every A with exactly 12 X at equal distances (within
    ``cubic_length_tol``), and for a one-formula (5-atom) cell a Niggli-reduced cell with equal lengths and
    90° angles.  With ``symmetry="spglib"`` the space group found by spglib at ``symprec`` (Å) must be 221
    (Pm-3m) instead.
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not pbc.all():
        return False, "not periodic in all three directions"
    numbers = np.asarray(atoms.numbers)
    counts = Counter(numbers.tolist())
    if len(counts) != 3:
        return False, f"{len(counts)} elements, ABX3 needs 3"
    g = reduce(math.gcd, counts.values())
    reduced = {z: c // g for z, c in counts.items()}
    if sorted(reduced.values()) != [1, 1, 3]:
        return False, f"composition {atoms.get_chemical_formula(empirical=True)} does not reduce to ABX3"
    x = next(z for z, c in reduced.items() if c == 3)
    anion_z = {atomic_numbers[s] if isinstance(s, str) else int(s) for s in anions}
    if x not in anion_z:
        return False, (
            f"X = {chemical_symbols[x]} is not one of the anions {sorted(chemical_symbols[z] for z in anion_z)}"
        )
    cations = [z for z in reduced if z != x]
    volume = abs(float(np.linalg.det(atoms.cell.array)))
    n_fu = counts[x] // 3
    if not volume > 1e-6:
        return False, "degenerate cell"
    a_p = (volume / n_fu) ** (1.0 / 3.0)  # pseudo-cubic lattice parameter
    cutoff = 1.25 * a_p  # covers the A-X shell (about 0.71 a_p, times 1 + a_site_tol) of any perovskite

    from ase.neighborlist import neighbor_list

    i, j, d, vec = neighbor_list("ijdD", atoms, cutoff, self_interaction=False)
    to_x = numbers[j] == x
    i, j, d, vec = i[to_x], j[to_x], d[to_x], vec[to_x]
    order = np.lexsort((d, i))
    i, j, d, vec = i[order], j[order], d[order], vec[order]
    starts = np.searchsorted(i, np.arange(len(atoms) + 1))

    def nearest(z):
        sel = np.isin(i, np.flatnonzero(numbers == z))
        return float(d[sel].mean()) if sel.any() else np.inf

    # try the cation with the shorter bonds as B first; report that assignment's reason on failure
    candidates = sorted(cations, key=nearest)
    first_reason = None
    opts = dict(
        bond_tol=bond_tol,
        a_site_tol=a_site_tol,
        a_site_coordination=a_site_coordination,
        octahedron_angle_tol=octahedron_angle_tol,
        link_angle_tol=link_angle_tol,
        cutoff=cutoff,
    )
    for b_z, a_z in ((candidates[0], candidates[1]), (candidates[1], candidates[0])):
        ok, reason, geo = _perovskite_geometry(numbers, i, j, d, vec, starts, b_z, a_z, x, **opts)
        if ok:
            if not cubic_only:
                return True, (
                    f"perovskite with A = {chemical_symbols[a_z]}, B = {chemical_symbols[b_z]}, "
                    f"X = {chemical_symbols[x]}"
                )
            if symmetry == "spglib":
                number = _spacegroup_number(atoms, symprec)
                if number != 221:
                    return False, f"perovskite, but spglib space group {number} is not 221 (Pm-3m) at symprec {symprec}"
                return True, "cubic Pm-3m perovskite (spglib)"
            return _cubic_geometry(atoms, geo, n_fu, cubic_length_tol, cubic_angle_tol)
        if first_reason is None:
            first_reason = reason
    return False, first_reason


def is_perovskite(atoms: Atoms, **options) -> bool:
    """``perovskite_check(atoms, **options)[0]``."""
    return perovskite_check(atoms, **options)[0]


def _perovskite_geometry(
    numbers,
    i,
    j,
    d,
    vec,
    starts,
    b_z,
    a_z,
    x_z,
    *,
    bond_tol,
    a_site_tol,
    a_site_coordination,
    octahedron_angle_tol,
    link_angle_tol,
    cutoff,
):
    sym_b, sym_a, sym_x = chemical_symbols[b_z], chemical_symbols[a_z], chemical_symbols[x_z]
    trans_cos = math.cos(math.radians(180.0 - octahedron_angle_tol))
    cis_lo = math.cos(math.radians(90.0 + octahedron_angle_tol))
    cis_hi = math.cos(math.radians(90.0 - octahedron_angle_tol))
    bond_len, cis_angles, trans_angles = [], [], []
    to_b: dict[int, list] = {}
    for b in np.flatnonzero(numbers == b_z):
        lo, hi = starts[b], starts[b + 1]
        if hi == lo:
            return False, f"B = {sym_b} atom {b} has no {sym_x} within {cutoff:.2f} Å", None
        dist = d[lo:hi]
        shell_r = dist[0] * (1.0 + bond_tol)
        if shell_r > cutoff:
            return False, f"B = {sym_b} atom {b}: nearest {sym_x} at {dist[0]:.2f} Å is too far for a perovskite", None
        shell = dist <= shell_r
        n_shell = int(shell.sum())
        if n_shell != 6:
            return (
                False,
                (
                    f"B = {sym_b} atom {b} has {n_shell} {sym_x} neighbours within {shell_r:.2f} Å, "
                    "an octahedron needs 6"
                ),
                None,
            )
        v = vec[lo:hi][shell]
        u = v / np.linalg.norm(v, axis=1)[:, None]
        cos = u @ u.T
        np.fill_diagonal(cos, np.nan)
        n_trans = (cos <= trans_cos).sum(axis=1)
        n_cis = ((cos >= cis_lo) & (cos <= cis_hi)).sum(axis=1)
        if not ((n_trans == 1).all() and (n_cis == 4).all()):
            return False, f"B = {sym_b} atom {b}: its 6 {sym_x} neighbours do not form an octahedron", None
        ang = np.degrees(np.arccos(np.clip(cos[np.triu_indices(6, 1)], -1.0, 1.0)))
        trans_angles.extend(ang[ang > 135.0].tolist())
        cis_angles.extend(ang[ang <= 135.0].tolist())
        bond_len.extend(dist[shell].tolist())
        for xj, vv in zip(j[lo:hi][shell], v):
            to_b.setdefault(int(xj), []).append(-vv)  # X -> B vector
    link_cos = math.cos(math.radians(180.0 - link_angle_tol))
    link_angles = []
    for xa in np.flatnonzero(numbers == x_z):
        vs = to_b.get(int(xa), [])
        if len(vs) != 2:
            return False, f"X = {sym_x} atom {xa} belongs to {len(vs)} octahedra, corner sharing needs 2", None
        c = float(vs[0] @ vs[1] / (np.linalg.norm(vs[0]) * np.linalg.norm(vs[1])))
        angle = math.degrees(math.acos(min(1.0, max(-1.0, c))))
        if c > link_cos:
            return (
                False,
                (
                    f"{sym_b}-{sym_x}-{sym_b} angle {angle:.1f}° at {sym_x} atom {xa} is below "
                    f"{180 - link_angle_tol:.0f}° (octahedra not corner-sharing)"
                ),
                None,
            )
        link_angles.append(angle)
    lo_c, hi_c = a_site_coordination
    a_shells = []
    for a in np.flatnonzero(numbers == a_z):
        lo, hi = starts[a], starts[a + 1]
        if hi == lo:
            return False, f"A = {sym_a} atom {a} has no {sym_x} within {cutoff:.2f} Å", None
        dist = d[lo:hi]
        shell_r = dist[0] * (1.0 + a_site_tol)
        if shell_r > cutoff:
            return False, f"A = {sym_a} atom {a}: nearest {sym_x} at {dist[0]:.2f} Å is too far for a perovskite", None
        shell = dist[dist <= shell_r]
        if not lo_c <= len(shell) <= hi_c:
            return (
                False,
                (
                    f"A = {sym_a} atom {a} has {len(shell)} {sym_x} neighbours within {shell_r:.2f} Å, "
                    f"expected {lo_c}-{hi_c}"
                ),
                None,
            )
        a_shells.append(shell)
    geo = {
        "bond_len": np.array(bond_len),
        "cis": np.array(cis_angles),
        "trans": np.array(trans_angles),
        "link": np.array(link_angles),
        "a_shells": a_shells,
    }
    return True, "", geo


def _cubic_geometry(atoms, geo, n_fu, length_tol, angle_tol) -> tuple[bool, str]:
    bl = geo["bond_len"]
    if np.abs(bl / bl.mean() - 1.0).max() > length_tol:
        return False, "perovskite, but B-X bond lengths differ (not cubic)"
    if np.abs(geo["cis"] - 90.0).max() > angle_tol or (geo["trans"] < 180.0 - angle_tol).any():
        return False, "perovskite, but the octahedra are distorted (not cubic)"
    if (geo["link"] < 180.0 - angle_tol).any():
        return False, f"perovskite, but the octahedra are tilted (B-X-B down to {geo['link'].min():.1f}°; not cubic)"
    for shell in geo["a_shells"]:
        if len(shell) != 12 or np.abs(shell / shell.mean() - 1.0).max() > length_tol:
            return False, "perovskite, but an A site is not at the centre of a regular 12-fold cavity (not cubic)"
    if n_fu == 1:
        from ase.cell import Cell

        reduced, _ = Cell(atoms.cell.array).niggli_reduce()
        par = reduced.cellpar()
        lengths, angles = par[:3], par[3:]
        if np.abs(lengths / lengths.mean() - 1.0).max() > length_tol or np.abs(angles - 90.0).max() > angle_tol:
            return False, "perovskite, but the 5-atom cell is not cubic"
    return True, "cubic Pm-3m perovskite (geometric)"


def _spacegroup_number(atoms, symprec) -> int | None:
    import spglib

    cell = (np.asarray(atoms.cell.array), atoms.get_scaled_positions(wrap=True), np.asarray(atoms.numbers))
    ds = spglib.get_symmetry_dataset(cell, symprec=symprec)
    if ds is None:
        return None
    return int(ds.number if hasattr(ds, "number") else ds["number"])
