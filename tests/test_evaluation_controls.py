"""Positive and negative controls for every evaluation protocol, on systems with a known answer.

Bond detection against hand-counted g2 molecules and crystals; MD stability (the teacher passes, a model with a
hole fails); NVE energy conservation to velocity Verlet's O(dt²); relaxation to analytic minima; frequencies to
sqrt(k/μ) and to ASE's own vibrations module; accuracy against own and shifted labels; speed against itself
and against a deliberately slower copy.
"""

import json
import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.calculators.morse import MorsePotential
from ase.calculators.singlepoint import SinglePointCalculator
from ase.cluster import Icosahedron
from ase.collections import g2
from test_evaluation_dynamics import R_MIN, nu_cm1

from hessdistill.core.model import calculator_predictor
from hessdistill.evaluation.accuracy import accuracy
from hessdistill.evaluation.md import find_bonds, md_stability_suite, mean_sem, run_md
from hessdistill.evaluation.relax import relax_comparison, run_optimizer
from hessdistill.evaluation.speed import time_teacher
from hessdistill.evaluation.vibrations import (
    fd_hessian_fn,
    frequency_suite,
    harmonic_frequencies,
    vibrational_comparison,
)

# ------------------------------------------------------------------------------------------ bonds

#: Chemical bonds (bonded atom pairs, bond order ignored), counted by hand from the structural formulas.
G2_BONDS = {
    "H2": 1,
    "F2": 1,
    "Cl2": 1,
    "N2": 1,
    "P2": 1,
    "S2": 1,
    "Li2": 1,
    "HF": 1,
    "NaCl": 1,
    "OH": 1,
    "CN": 1,
    "H2O": 2,
    "CO2": 2,
    "SO2": 2,
    "NO2": 2,
    "HCN": 2,
    "H2O2": 3,
    "NH3": 3,
    "PH3": 3,
    "PF3": 3,
    "CH3": 3,
    "ClF3": 3,
    "AlCl3": 3,
    "C2H2": 3,
    "CH4": 4,
    "SiH4": 4,
    "SiF4": 4,
    "CCl4": 4,
    "HCOOH": 4,
    "CH3NO2": 6,
    "Si2H6": 7,
    "CH3CH2OH": 8,
    "C4H4O": 9,
    "C4H4S": 9,
    "C2H6SO": 9,
    "bicyclobutane": 11,
    "C5H5N": 11,
    "C6H6": 12,
    "cyclobutane": 12,
    "trans-butane": 13,
}
#: Largest number of bonded neighbours each element can have (hypervalent S, P, Cl included).
MAX_VALENCE = {
    "H": 1,
    "Li": 1,
    "Na": 1,
    "F": 1,
    "Be": 2,
    "O": 2,
    "B": 4,
    "Al": 4,
    "C": 4,
    "Si": 4,
    "N": 4,
    "P": 5,
    "S": 6,
    "Cl": 7,
}


def degrees(atoms, bonds):
    deg = np.zeros(len(atoms), int)
    for i, j, _ in bonds:
        deg[i] += 1
        deg[j] += 1
    return deg


@pytest.mark.parametrize("name,expected", sorted(G2_BONDS.items()))
def test_bond_count_matches_chemistry(name, expected):
    assert len(find_bonds(g2[name])) == expected


def test_every_g2_molecule_is_one_connected_bond_graph_within_valence():
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    checked = 0
    for name in g2.names:
        a = g2[name]
        if len(a) < 2:
            continue
        bonds = find_bonds(a)
        ij = np.array([(i, j) for i, j, _ in bonds]).reshape(-1, 2)
        graph = coo_matrix((np.ones(len(ij)), (ij[:, 0], ij[:, 1])), shape=(len(a), len(a)))
        assert connected_components(graph, directed=False)[0] == 1, name
        over = [(s, d) for s, d in zip(a.get_chemical_symbols(), degrees(a, bonds)) if d > MAX_VALENCE[s]]
        assert not over, (name, over)
        checked += 1
    assert checked == 148  # g2: 162 entries, 14 of them single atoms


def test_periodic_bonds_through_images():
    si = bulk("Si", "diamond", a=5.43, cubic=True)
    bonds = find_bonds(si)
    assert len(bonds) == 16 and set(degrees(si, bonds)) == {4}
    assert any(s != (0, 0, 0) for _, _, s in bonds)
    sto = Atoms(
        "SrTiO3",
        scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        cell=[3.905] * 3,
        pbc=True,
    )
    bonds = find_bonds(sto)
    sym = sto.get_chemical_symbols()
    kinds = sorted("".join(sorted((sym[i], sym[j]))) for i, j, _ in bonds)
    assert kinds.count("OTi") == 6 and kinds.count("OSr") == 12 and len(kinds) == 18  # no Sr-Ti, Ti-Ti, O-O
    cu = bulk("Cu", "fcc", a=3.61)
    assert set(degrees(cu, find_bonds(cu))) == {12}  # a one-atom cell: 6 image pairs, each counted at both ends


# ------------------------------------------------------------------------------------- calculators


class Harmonic(Calculator):
    """Independent 3D oscillators, E = k/2 Σ |r_i - r0_i|²."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, k, r0, **kw):
        super().__init__(**kw)
        self.k, self.r0 = k, np.asarray(r0, float)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        u = self.atoms.positions - self.r0
        self.results = {"energy": 0.5 * self.k * float((u * u).sum()), "forces": -self.k * u}


class Spring(Calculator):
    """A harmonic bond between atoms 0 and 1, E = k/2 (r - r0)²."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, k, r0, **kw):
        super().__init__(**kw)
        self.k, self.r0 = k, r0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        d = self.atoms.positions[1] - self.atoms.positions[0]
        r = np.linalg.norm(d)
        f1 = -self.k * (r - self.r0) * d / r
        self.results = {"energy": 0.5 * self.k * (r - self.r0) ** 2, "forces": np.array([-f1, f1])}


class Hole(Calculator):
    """``base`` plus a bottomless well -c/r between atoms 0 and 1 (a potential with a hole), only for structures
    with ``info["hole"]`` (a model that is broken on some structures)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, base, c=20.0, **kw):
        super().__init__(**kw)
        self.base, self.c = base, c

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()
        a.calc = self.base
        e, f = a.get_potential_energy(), a.get_forces()
        if self.atoms.info.get("hole", True):
            d = a.positions[1] - a.positions[0]
            r = np.linalg.norm(d)
            e -= self.c / r
            f[0] += self.c / r**2 * d / r
            f[1] -= self.c / r**2 * d / r
        self.results = {"energy": e, "forces": f}


class Kick(Calculator):
    """Random forces of ~``scale`` eV/Å on every atom at every call."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, scale, **kw):
        super().__init__(**kw)
        self.scale, self.rng = scale, np.random.default_rng(0)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": 0.0, "forces": self.rng.normal(scale=self.scale, size=(len(self.atoms), 3))}


def cu13():
    return Icosahedron("Cu", noshells=2)


# ---------------------------------------------------------------------------------- MD stability


def test_md_teacher_stable_on_its_own_cluster_and_holes_are_caught():
    good = run_md(cu13(), EMT(), steps=500, seed=0, log_every=5)
    assert good["stable"] and good["criterion"] == "bonds" and good["n_bonds"] == 42  # 12 radial + 30 shell
    assert good["drift_meV_atom_ps"] is not None and abs(good["drift_meV_atom_ps"]) < 1.0
    hole = run_md(cu13(), Hole(EMT()), steps=500, seed=0, log_every=5)
    assert not hole["stable"] and hole["time_to_collapse_ps"] < 0.5
    assert hole["drift_meV_atom_ps"] is None and "time to collapse" in hole["energy_stats_note"]
    kick = run_md(cu13(), Kick(30.0), steps=500, seed=0, log_every=5)
    assert not kick["stable"] and kick["reason"] == "bond_deviation"


def test_md_molecule_falling_apart_is_caught():
    """An H atom pushed off ethanol: its C-H bond (longer than the plain sum of covalent radii) must be watched."""
    etoh = molecule("CH3CH2OH")
    h = next(i for i, s in enumerate(etoh.get_chemical_symbols()) if s == "H")
    push = np.zeros((len(etoh), 3))
    push[h] = 3.0 * (etoh.positions[h] - etoh.positions.mean(axis=0)) / np.linalg.norm(etoh.positions[h])

    class Push(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.results = {"energy": -float((push * self.atoms.positions).sum()), "forces": push.copy()}

    res = run_md(etoh, Push(), steps=300, temperature_K=10, seed=0)
    assert res["n_bonds"] == 8 and res["collapsed"] and res["reason"] == "bond_deviation"


def test_md_suite_averages_drift_over_stable_runs_only():
    ok, broken = cu13(), cu13()
    ok.info["hole"], broken.info["hole"] = False, True
    suite = md_stability_suite([ok, broken, ok], Hole(EMT()), steps=500, seed=0, log_every=5)
    runs = suite["runs"]
    assert suite["n_stable"] == 2 and [r["stable"] for r in runs] == [True, False, True]
    drifts = [abs(runs[0]["drift_meV_atom_ps"]), abs(runs[2]["drift_meV_atom_ps"])]
    assert suite["mean_abs_drift_n"] == 2 and suite["mean_abs_drift_meV_atom_ps"] == pytest.approx(np.mean(drifts))
    assert suite["mean_abs_drift_se_meV_atom_ps"] == pytest.approx(np.std(drifts, ddof=1) / math.sqrt(2))
    assert suite["mean_time_to_collapse_n"] == 1 and suite["mean_survival_time_n"] == 3
    assert suite["mean_time_to_collapse_ps"] == runs[1]["time_to_collapse_ps"]
    json.dumps(suite, allow_nan=False)


def test_mean_sem():
    assert mean_sem([1.0, 2.0, 3.0, None]) == {"mean": 2.0, "se": pytest.approx(1 / math.sqrt(3)), "n": 3}
    assert mean_sem([4.0]) == {"mean": 4.0, "se": None, "n": 1}
    assert mean_sem([]) == {"mean": None, "se": None, "n": 0}


# ------------------------------------------------------------------------------- NVE conservation


def test_velocity_verlet_energy_error_is_second_order():
    a = Atoms("Cu8", positions=5.0 * np.indices((2, 2, 2)).reshape(3, -1).T)
    calc = Harmonic(k=20.0, r0=a.positions)  # period 2π sqrt(m/k) ≈ 115 fs
    fluct = {}
    for dt in (2.0, 1.0):
        r = run_md(a, calc, timestep_fs=dt, steps=int(600 / dt), log_every=1, seed=3, temperature_K=300)
        assert r["stable"] and r["criterion"] == "bonds" and r["n_bonds"] == 0
        fluct[dt] = r["fluctuation_meV_atom"]
        assert abs(r["drift_meV_atom_ps"]) * 0.6 < 0.2 * r["fluctuation_meV_atom"]  # bounded error, no trend
    assert fluct[2.0] / fluct[1.0] == pytest.approx(4.0, rel=0.1)


# ------------------------------------------------------------------------------------- relaxation


def test_relaxations_reach_analytic_minima():
    eps, r0, rho0 = 1.0, 1.4, 6.0
    morse = MorsePotential(epsilon=eps, r0=r0, rho0=rho0, rcut1=8.0, rcut2=9.0)
    dimer = Atoms("H2", positions=[[0, 0, 0], [1.7, 0, 0]])
    dimer.calc = morse
    fmax = 1e-3
    assert run_optimizer(dimer, optimizer="BFGS", fmax=fmax)["converged"]
    k = 2 * eps * (rho0 / r0) ** 2  # curvature at r0
    assert abs(dimer.get_distance(0, 1) - r0) <= fmax / k
    res = relax_comparison(
        [Atoms("H2", positions=[[0, 0, 0], [1.3, 0, 0]])] * 5,
        morse,
        morse,
        fmax=fmax,
        max_steps=300,
        optimizer="BFGS",
        perturb=0.05,
        seed=0,
    )
    assert res["model_success_rate"] == 1.0 and res["n_compared"] == 5 and res["rmsd_n"] == 5
    assert res["rmsd_mean_A"] < 1e-3 and res["energy_error_mae_meV_atom"] < 1e-3
    lj_dimer = Atoms("Ar2", positions=[[0, 0, 0], [1.3, 0, 0]])
    lj_dimer.calc = LennardJones(sigma=1.0, epsilon=1.0, rc=10.0)
    assert run_optimizer(lj_dimer, optimizer="BFGS", fmax=1e-4)["converged"]
    assert lj_dimer.get_distance(0, 1) == pytest.approx(R_MIN, abs=1e-4)  # 2^(1/6) σ
    bottomless = Hole(Spring(5.0, 1.3), c=2.0)  # c/r² beats the spring at every r: no minimum
    res = relax_comparison(
        [Atoms("Ar2", positions=[[0, 0, 0], [1.3, 0, 0]])], bottomless, Spring(5.0, 1.3), max_steps=200, seed=0
    )
    assert res["model_success_rate"] == 0.0 and res["teacher_success_rate"] == 1.0 and res["failures"]


# ------------------------------------------------------------------------------------- vibrations


def test_harmonic_diatomic_frequency_and_ase_units(tmp_path):
    from ase.vibrations import Vibrations

    k, r0 = 30.0, 1.1
    a = Atoms("CO", positions=[[0, 0, 0], [r0, 0, 0]])
    m = a.get_masses()
    mu = m[0] * m[1] / m.sum()
    nu = harmonic_frequencies(a, fd_hessian_fn(Spring(k, r0))(a))
    assert nu.shape == (1,) and nu[0] == pytest.approx(nu_cm1(k, mu), rel=1e-6)
    work = a.copy()
    work.calc = Spring(k, r0)
    vib = Vibrations(work, name=str(tmp_path / "vib"), delta=1e-3, nfree=2)
    vib.run()
    ase_nu = np.sort(np.abs(vib.get_frequencies().real))[-1]
    assert nu[0] == pytest.approx(ase_nu, rel=1e-6)
    same = vibrational_comparison(a, Spring(k, r0), Spring(k, r0), fmax=1e-5)
    assert same["freq_mae_cm1"] < 1e-6
    stiff = vibrational_comparison(a, Spring(1.21 * k, r0), Spring(k, r0), fmax=1e-5)  # ν scales with sqrt(k)
    assert stiff["freq_mae_cm1"] == pytest.approx(0.1 * nu_cm1(k, mu), rel=1e-5)
    agg = frequency_suite([same, stiff])
    assert agg["freq_mae_n"] == 2 and agg["freq_mae_cm1"] == pytest.approx(stiff["freq_mae_cm1"] / 2, rel=1e-5)
    assert agg["freq_mae_se_cm1"] == pytest.approx(agg["freq_mae_cm1"], rel=1e-4)  # values {0, x}: s.e. = x/2


# ------------------------------------------------------------------------------ accuracy and speed


def test_accuracy_zero_on_own_labels_and_equal_to_a_known_shift():
    structures = []
    for s in range(4):
        c = bulk("Cu", "fcc", a=3.61, cubic=True)
        c.rattle(0.05, seed=s)
        c.calc = EMT()
        e, f = c.get_potential_energy(), c.get_forces()
        c.calc = SinglePointCalculator(c, energy=e, forces=f)
        structures.append(c)
    own = accuracy(calculator_predictor(EMT()), structures)
    assert own["ref_energy_mae_meV_atom"] < 1e-9 and own["ref_force_mae_meV_A"] < 1e-9
    for c in structures:
        c.calc = SinglePointCalculator(
            c, energy=c.get_potential_energy() + 0.007 * len(c), forces=c.get_forces() - 0.004
        )
    shifted = accuracy(calculator_predictor(EMT()), structures)
    assert shifted["ref_energy_mae_meV_atom"] == pytest.approx(7.0)
    assert shifted["ref_force_mae_meV_A"] == pytest.approx(4.0)


def test_speed_against_itself_and_a_slower_copy():
    from hessdistill.teachers import load_teacher

    mols = [molecule("H2O"), molecule("NH3")]
    fast = load_teacher("torch:toy_models:slow_morse", delay=0.01, dtype="float64")
    slow = load_teacher("torch:toy_models:slow_morse", delay=0.03, dtype="float64")
    t1, t2, t3 = (time_teacher(t, mols, repeats=3, warmup=1) for t in (fast, fast, slow))
    assert 0.5 < t1["latency_ms"] / t2["latency_ms"] < 2.0  # same model: ~1 (loose: shared machine)
    assert t3["latency_ms"] / t1["latency_ms"] > 2.0 and t1["throughput_structures_s"] > t3["throughput_structures_s"]


# ----------------------------------------------------------------------------- curvature on the teacher's scale
def test_curvature_errors_known_answers():
    """Identical Hessians: zero errors; a Hessian scaled by 1.21: relative error 0.21 and every frequency 1.1x
    (MAE 10 % of the teacher's mean); a mode pushed negative: one spurious imaginary mode and the atom it sits on
    has the largest block error."""
    from hessdistill.evaluation.vibrations import compare_frequencies

    a = bulk("Cu", "fcc", a=3.6, cubic=True)
    a.calc = EMT()
    h = fd_hessian_fn(EMT(), step=1e-3)(a)
    h = 0.5 * (h + h.T)
    same = compare_frequencies(a, h, h)
    assert same["hessian_rel_error"] == pytest.approx(0.0, abs=1e-12)
    assert same["n_spurious_imaginary"] == 0 and same["freq_mae_rel"] == pytest.approx(0.0, abs=1e-12)
    scaled = compare_frequencies(a, 1.21 * h, h)
    assert scaled["hessian_rel_error"] == pytest.approx(0.21, rel=1e-9)
    assert scaled["spectrum_rel_error"] == pytest.approx(0.21, rel=1e-9)
    assert scaled["freq_mae_rel"] == pytest.approx(0.1, rel=1e-6)
    # push the curvature along atom 0's x displacement far negative
    bad = h.copy()
    bad[0, 0] -= 3 * np.abs(h).max()
    res = compare_frequencies(a, bad, h)
    assert res["n_imaginary_teacher"] == 0 and res["n_spurious_imaginary"] == 1
    assert res["hessian_rel_block_error_max"] > 3 * res["hessian_rel_block_error_mean"]
    suite = frequency_suite([same, scaled, res])
    assert suite["n_spurious_imaginary"] == 1 and suite["n_structures_with_spurious_imaginary"] == 1
    assert suite["hessian_rel_error_se"] is not None and suite["freq_mae_rel"] > 0


def test_relative_hessian_error_of_stored_rows():
    from hessdistill.evaluation.accuracy import hessian_accuracy

    a = molecule("H2O")
    rows = np.arange(4)
    h = fd_hessian_fn(EMT(), step=1e-3)(a)[rows]
    res = hessian_accuracy(lambda atoms, idx: 1.1 * h, [a, a], [(rows, h), (rows, h)])
    assert res["hessian_rel_error"] == pytest.approx(0.1, rel=1e-9)
    assert res["hessian_rel_error_per_structure"] == pytest.approx([0.1, 0.1])


class _ScaledEMT(EMT):
    """EMT with energies and forces scaled: force constants x s, every phonon frequency x sqrt(s)."""

    def __init__(self, s):
        super().__init__()
        self.s = s

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {
            k: (self.s * v if k in ("energy", "free_energy", "forces", "energies") else v)
            for k, v in self.results.items()
        }


def test_phonons_known_answers():
    """The teacher against itself: zero error; force constants x 1.21: frequencies x 1.1 everywhere on the mesh
    (relative MAE 0.1); the model's band structure and DOS are reported beside the teacher's; molecules refused."""
    from hessdistill.evaluation.phonons import phonon_comparison, phonon_suite

    cu = bulk("Cu", "fcc", a=3.61)
    same = phonon_comparison(cu, EMT(), EMT(), mesh=(4, 4, 4), band_points=5)
    assert same["spacegroup"].startswith("Fm-3m") and same["freq_mae_cm1"] == pytest.approx(0.0, abs=1e-9)
    assert same["n_imaginary_teacher"] == 0 and 100 < same["teacher_mean_freq_cm1"] < 250  # Cu: up to ~240 cm⁻¹
    scaled = phonon_comparison(cu, _ScaledEMT(1.21), EMT(), relax=False, mesh=(4, 4, 4), band_points=5)
    assert scaled["freq_mae_rel"] == pytest.approx(0.1, rel=1e-6)
    fm = np.asarray(scaled["bands"]["model"]["frequencies_cm1"][0])
    ft = np.asarray(scaled["bands"]["teacher"]["frequencies_cm1"][0])
    np.testing.assert_allclose(fm, 1.1 * ft, atol=1e-6)
    assert len(scaled["dos"]["model"]["dos"]) == len(scaled["dos"]["teacher"]["frequency_cm1"])
    soft = phonon_comparison(cu, _ScaledEMT(-0.5), EMT(), relax=False, mesh=(4, 4, 4), band_points=5)
    assert soft["n_spurious_imaginary"] > 0  # negative force constants: imaginary branches the teacher lacks
    suite = phonon_suite([same, scaled, soft, phonon_comparison(molecule("H2O"), EMT(), EMT())])
    assert suite["n_failed"] == 1 and suite["n_structures_with_spurious_imaginary"] == 1


def test_phonon_structures_prefer_distinct_compounds():
    from hessdistill.evaluation.phonons import phonon_structures

    nacl = bulk("NaCl", "rocksalt", a=5.6)
    cu = bulk("Cu", "fcc", a=3.61)
    pool = [nacl.repeat(2), molecule("H2O"), nacl, cu.repeat(2), cu]
    got = phonon_structures(pool, 3)
    assert [len(a) for a in got] == [1, 2, 8]  # Cu and NaCl's smallest cells first, then the next smallest


def test_vibration_structures_come_from_distinct_trajectories_first():
    from hessdistill.evaluation.vibrations import spread_structures

    pool = []
    for t, count in (("md0", 3), ("md1", 1), ("rattle0", 2)):
        for f in range(count):
            a = molecule("H2O")
            a.info.update(trajectory=t, frame=f)
            pool.append(a)
    loose = molecule("CH4")  # no trajectory recorded: its own group
    got = spread_structures(pool + [loose], 5)
    assert [(a.info.get("trajectory"), a.info.get("frame")) for a in got] == [
        ("md0", 0),
        ("md1", 0),
        ("rattle0", 0),
        (None, None),
        ("md0", 1),
    ]
    assert len(spread_structures(pool, 50)) == 6 and spread_structures(pool, 0) == []


def test_phonons_of_a_two_species_crystal_match_its_hessian_at_gamma():
    """Cu3Au (L1_2, EMT): phonopy's supercells list atoms by primitive atom, not in Atoms.repeat order, so the
    species must follow phonopy's order.  At Gamma the force constants folded over the supercell are the
    primitive cell's own Hessian: the frequencies must agree, with three acoustic zeros (with the species
    scrambled the acoustic modes came out at -16 cm^-1 here, and most modes of cubic perovskites imaginary)."""
    from hessdistill.evaluation.phonons import THZ_TO_CM1, force_constants
    from hessdistill.evaluation.vibrations import eigenvalues_to_cm1, fd_hessian_fn, mass_weighted_hessian

    a = bulk("Cu", "fcc", a=3.75, cubic=True)
    a.symbols[0] = "Au"
    ph = force_constants(a, EMT(), [2, 2, 2], displacement=0.005)
    ph.run_qpoints([[0, 0, 0]])
    gamma = np.sort(ph.get_qpoints_dict()["frequencies"][0] * THZ_TO_CM1)
    h = fd_hessian_fn(EMT(), step=0.005)(a)
    direct = np.sort(eigenvalues_to_cm1(np.linalg.eigvalsh(mass_weighted_hessian(a, h))))
    assert np.allclose(gamma[:3], 0.0, atol=1.0)
    np.testing.assert_allclose(gamma[3:], direct[3:], rtol=0.02, atol=1.0)
    assert gamma[3] > 20.0  # a stable crystal: real optical modes


def test_phonons_of_a_rattled_frame_are_those_of_the_crystal():
    from hessdistill.evaluation.phonons import idealized, phonon_comparison

    frame = bulk("Cu", "fcc", a=3.61, cubic=True)
    frame.positions += np.random.default_rng(0).normal(scale=0.02, size=frame.positions.shape)
    ideal = idealized(frame, 0.1)
    assert len(ideal) == 1  # the primitive fcc cell
    res = phonon_comparison(frame, EMT(), EMT(), mesh=(4, 4, 4), band_points=5)
    assert res["spacegroup"].startswith("Fm-3m") and res["n_imaginary_teacher"] == 0
