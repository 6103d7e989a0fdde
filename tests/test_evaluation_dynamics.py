"""Evaluation: harmonic frequencies, MD stability / energy conservation, relaxation — against analytic truth."""

import json
import math

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.calculators.morse import MorsePotential
from toy_models import lj_hessian  # noqa: E402

from hessdistill.evaluation.md import find_bonds, md_stability_suite, reference_bond_lengths, run_md, smeared_rdf
from hessdistill.evaluation.output import write_json
from hessdistill.evaluation.relax import kabsch_rmsd, relax_comparison
from hessdistill.evaluation.vibrations import (
    compare_frequencies,
    fd_hessian_fn,
    harmonic_frequencies,
    vibrational_comparison,
)

R_MIN = 2.0 ** (1.0 / 6.0)  # LJ minimum for sigma = 1


def nu_cm1(k_eV_A2, mass_amu):
    """Independent conversion: ν = sqrt(k/m) / (2π c), SI units, in cm⁻¹."""
    return math.sqrt(k_eV_A2 * units._e * 1e20 / (mass_amu * units._amu)) / (2 * math.pi * units._c * 100)


def spring_hessian(positions, pairs, k, r0=None):
    """Analytic Hessian of E = Σ k/2 (|r_ij| - r0_ij)² (pair list), eV/Å²."""
    pos = np.asarray(positions, float)
    n = len(pos)
    h = np.zeros((3 * n, 3 * n))
    for p, (i, j) in enumerate(pairs):
        d = pos[j] - pos[i]
        r = np.linalg.norm(d)
        e = d / r
        ref = r if r0 is None else r0[p]
        blk = k * np.outer(e, e) + k * (r - ref) / r * (np.eye(3) - np.outer(e, e))
        for a, b, s in ((i, i, 1), (j, j, 1), (i, j, -1), (j, i, -1)):
            h[3 * a : 3 * a + 3, 3 * b : 3 * b + 3] += s * blk
    return h


def tetrahedron(side):
    return side / math.sqrt(8.0) * np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float)


def random_rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# ------------------------------------------------------------------------------------ vibrations


def test_harmonic_diatomic_frequency_matches_analytic():
    k = 35.0
    a = Atoms("CO", positions=[[0, 0, 0], [1.13, 0, 0]])
    m = a.get_masses()
    mu = m[0] * m[1] / (m[0] + m[1])
    f = harmonic_frequencies(a, spring_hessian(a.positions, [(0, 1)], k))
    assert f.shape == (1,)  # 3N-5 for a linear molecule
    assert f[0] == pytest.approx(nu_cm1(k, mu), rel=1e-10)


def test_morse_diatomic_fd_frequency():
    eps, r0, rho0 = 2.0, 1.5, 6.0
    calc = MorsePotential(epsilon=eps, r0=r0, rho0=rho0, rcut1=10.0, rcut2=12.0)
    a = Atoms("H2", positions=[[0, 0, 0], [0.3, 0.4, r0 * math.sqrt(1 - 0.25 / r0**2)]])
    k = 2 * eps * (rho0 / r0) ** 2  # d²E/dr² at r0 of E = ε e^{ρ(1-r/r0)} (e^{ρ(1-r/r0)} - 2)
    f = harmonic_frequencies(a, fd_hessian_fn(calc, step=1e-4, order=4)(a))
    assert f.shape == (1,)
    assert f[0] == pytest.approx(nu_cm1(k, a.get_masses()[0] / 2), rel=1e-5)


def test_lj_trimer_and_tetrahedron_analytic_modes():
    k = 4 * (156 * R_MIN**-14 - 42 * R_MIN**-8)
    tri = Atoms("Ar3", positions=[[0, 0, 0], [R_MIN, 0, 0], [R_MIN / 2, R_MIN * math.sqrt(3) / 2, 0]])
    m = tri.get_masses()[0]
    f = harmonic_frequencies(tri, lj_hessian(tri.positions))
    want = sorted([nu_cm1(1.5 * k, m)] * 2 + [nu_cm1(3 * k, m)])
    np.testing.assert_allclose(f, want, rtol=1e-9)
    # the ASE calculator's forces by finite differences give the same (cutoff far away)
    f_fd = harmonic_frequencies(tri, fd_hessian_fn(LennardJones(sigma=1.0, epsilon=1.0, rc=10.0))(tri))
    np.testing.assert_allclose(f_fd, want, rtol=1e-4)

    tet = Atoms("Ar4", positions=tetrahedron(R_MIN))
    f = harmonic_frequencies(tet, lj_hessian(tet.positions))
    # springs on the edges of a regular tetrahedron: E (2x) ω²=k/m, T2 (3x) 2k/m, A1 4k/m
    want = sorted([nu_cm1(k, m)] * 2 + [nu_cm1(2 * k, m)] * 3 + [nu_cm1(4 * k, m)])
    np.testing.assert_allclose(f, want, rtol=1e-9)


def test_rigid_motion_and_mode_counts():
    pos = tetrahedron(1.15) + np.random.default_rng(0).normal(scale=0.05, size=(4, 3))  # not a stationary point
    a = Atoms("Ar4", positions=pos)
    f0 = harmonic_frequencies(a, lj_hessian(pos))
    assert f0.shape == (6,)
    rot = random_rotation(3)
    b = Atoms("Ar4", positions=pos @ rot.T + np.array([5.0, -2.0, 7.5]))
    f1 = harmonic_frequencies(b, lj_hessian(b.positions))
    np.testing.assert_allclose(f1, f0, rtol=1e-8, atol=1e-6)
    # a Hessian that breaks translational invariance slightly does not turn a zero mode into a vibration
    noisy = lj_hessian(pos) + 1e-6 * np.ones((12, 12))
    assert harmonic_frequencies(a, noisy).shape == (6,)
    # linear symmetric triatomic with stretch springs only: 3N-5 = 4 modes, two zero bends, two stretches
    k = 20.0
    lin = Atoms("OCO", positions=[[-1.16, 0, 0], [0, 0, 0], [1.16, 0, 0]])
    lin.rotate(37, (1, 2, 3))
    f = harmonic_frequencies(lin, spring_hessian(lin.positions, [(0, 1), (1, 2)], k))
    m_o, m_c = lin.get_masses()[0], lin.get_masses()[1]
    want = [0.0, 0.0, nu_cm1(k, m_o), nu_cm1(k * (1 / m_o + 2 / m_c), 1.0)]
    np.testing.assert_allclose(f, want, atol=1e-4, rtol=1e-9)
    # imaginary modes come back negative: a saddle (stretched beyond r0 with negative curvature)
    f_neg = harmonic_frequencies(
        Atoms("CO", positions=[[0, 0, 0], [1.1, 0, 0]]), -spring_hessian([[0, 0, 0], [1.1, 0, 0]], [(0, 1)], k)
    )
    assert f_neg.shape == (1,) and f_neg[0] < 0


def test_periodic_cu_acoustic_modes_removed():
    prim = bulk("Cu", "fcc", a=3.6)
    assert harmonic_frequencies(prim, fd_hessian_fn(EMT())(prim)).shape == (0,)  # 3N-3 = 0 at Γ
    cub = bulk("Cu", "fcc", a=3.6, cubic=True)
    h = fd_hessian_fn(EMT())(cub)
    f = harmonic_frequencies(cub, h)
    assert f.shape == (9,)
    assert f.min() > 100.0  # the zone-boundary modes folded to Γ are real and finite; no acoustic zeros
    # without projection there would be three ~0 modes: check the projector removes exactly those
    mw = h / np.sqrt(np.outer(np.repeat(cub.get_masses(), 3), np.repeat(cub.get_masses(), 3)))
    lam = np.linalg.eigvalsh(0.5 * (mw + mw.T))
    assert np.sum(np.abs(lam) < 1e-3 * np.abs(lam).max()) == 3
    # a molecule treated as periodic keeps its rotations as (zero) modes
    tri = Atoms("Ar3", positions=[[0, 0, 0], [R_MIN, 0, 0], [R_MIN / 2, R_MIN * math.sqrt(3) / 2, 0]])
    assert harmonic_frequencies(tri, lj_hessian(tri.positions), periodic=True).shape == (6,)


def test_compare_and_vibrational_comparison(tmp_path):
    tri = Atoms("Ar3", positions=[[0, 0, 0], [1.2, 0, 0], [0.5, 1.0, 0.1]])
    h = lj_hessian(tri.positions)
    same = compare_frequencies(tri, h, h)
    assert same["freq_mae_cm1"] == 0.0 and same["n_modes"] == 3
    teacher = LennardJones(sigma=1.0, epsilon=1.0, rc=10.0)
    model = LennardJones(sigma=1.05, epsilon=1.0, rc=10.0)
    res = vibrational_comparison(tri, model, teacher, teacher_hessian_fn=lambda a: lj_hessian(a.positions), fmax=1e-4)
    assert res["teacher_relax_converged"] and res["error"] is None
    m = tri.get_masses()[0]
    k = 4 * (156 * R_MIN**-14 - 42 * R_MIN**-8)
    np.testing.assert_allclose(res["teacher_cm1"], sorted([nu_cm1(1.5 * k, m)] * 2 + [nu_cm1(3 * k, m)]), rtol=1e-4)
    assert res["freq_mae_cm1"] > 10.0  # the wrong sigma is clearly visible
    res_same = vibrational_comparison(tri, teacher, teacher, fmax=1e-4)
    assert res_same["freq_mae_cm1"] < 1e-2
    write_json(tmp_path / "vib.json", res)
    assert json.loads((tmp_path / "vib.json").read_text())["n_modes"] == 3


# ------------------------------------------------------------------------------------------ MD


class CurlLJ(Calculator):
    """LJ plus a non-conservative rotational force field α ẑ × (r - c): no energy accounts for its work."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, alpha, **kw):
        super().__init__(**kw)
        self.lj = LennardJones(sigma=1.0, epsilon=1.0, rc=10.0)
        self.alpha = alpha

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()
        a.calc = self.lj
        r = a.positions - a.positions.mean(axis=0)
        self.results = {
            "energy": a.get_potential_energy(),
            "forces": a.get_forces() + self.alpha * np.cross([0.0, 0.0, 1.0], r),
        }


class Broken(Calculator):
    """EMT-like for ``k`` calls, then NaN / huge forces / an exception."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, base, k, mode, **kw):
        super().__init__(**kw)
        self.base, self.k, self.mode, self.calls = base, k, mode, 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        a = self.atoms.copy()
        a.calc = self.base
        e, f = a.get_potential_energy(), a.get_forces()
        if self.calls > self.k:
            if self.mode == "nan":
                f = f * np.nan
            elif self.mode == "huge":
                f = np.random.default_rng(self.calls).normal(scale=1e6, size=f.shape)
            else:
                raise RuntimeError("model blew up")
        self.results = {"energy": e, "forces": f}


class Pull(Calculator):
    """LJ dimer plus a constant force pulling the atoms apart (conservative: E includes -F·Δx)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, force, **kw):
        super().__init__(**kw)
        self.force = force
        self.lj = LennardJones(sigma=1.0, epsilon=1.0, rc=10.0)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()
        a.calc = self.lj
        f = a.get_forces()
        ext = np.array([[-self.force, 0, 0], [self.force, 0, 0]])
        self.results = {
            "energy": a.get_potential_energy() - self.force * (a.positions[1, 0] - a.positions[0, 0]),
            "forces": f + ext,
        }


def lj_cluster():
    return Atoms("Ar4", positions=tetrahedron(R_MIN))


def test_nve_conserves_energy_and_curl_force_does_not(tmp_path):
    good = run_md(
        lj_cluster(),
        LennardJones(sigma=1.0, epsilon=1.0, rc=10.0),
        steps=1000,
        timestep_fs=0.5,
        temperature_K=300,
        seed=1,
        log_every=5,
    )
    assert good["stable"] and good["steps_completed"] == 1000 and good["criterion"] == "bonds"
    assert abs(good["drift_meV_atom_ps"]) < 0.5 and good["max_abs_dE_meV_atom"] < 1.0
    bad = run_md(
        lj_cluster(),
        CurlLJ(alpha=0.2),
        steps=1000,
        timestep_fs=0.5,
        temperature_K=300,
        seed=1,
        log_every=5,
        stop_on_collapse=False,
    )
    assert bad["drift_meV_atom_ps"] > 20 * max(abs(good["drift_meV_atom_ps"]), 0.05)
    assert bad["max_abs_dE_meV_atom"] > 10 * good["max_abs_dE_meV_atom"]
    # same seed, same run; the result is JSON-able as is
    again = run_md(
        lj_cluster(),
        LennardJones(sigma=1.0, epsilon=1.0, rc=10.0),
        steps=1000,
        timestep_fs=0.5,
        temperature_K=300,
        seed=1,
        log_every=5,
    )
    assert again["series"]["etot_eV_atom"] == good["series"]["etot_eV_atom"]
    json.dumps(good, allow_nan=False)
    write_json(tmp_path / "md.json", good)
    s = good["series"]
    assert len(s["time_ps"]) == 201 and s["time_ps"][-1] == pytest.approx(0.5)
    # a window shorter than min_energy_window_ps (0.5 ps) gives no drift, and says why
    short = run_md(
        lj_cluster(),
        LennardJones(sigma=1.0, epsilon=1.0, rc=10.0),
        steps=400,
        timestep_fs=0.5,
        temperature_K=300,
        seed=1,
        log_every=5,
    )
    assert short["stable"] and short["drift_meV_atom_ps"] is None and short["fluctuation_meV_atom"] is None
    assert "0.2 ps" in short["energy_stats_note"] and short["max_abs_dE_meV_atom"] < 1.0


@pytest.mark.parametrize(
    "mode,reason", [("nan", "nonfinite"), ("huge", "force_too_large"), ("raise", "calculator_error")]
)
def test_broken_model_is_unstable_not_crashing(mode, reason):
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    # 1 call at start, then one per step: failure on the 21st call = step 20
    res = run_md(cu, Broken(EMT(), k=20, mode=mode), steps=100, log_every=10, seed=0)
    assert not res["stable"] and res["exploded"] and res["reason"] == reason
    assert res["time_to_collapse_ps"] == pytest.approx(0.020)
    assert res["steps_completed"] in (19, 20)
    json.dumps(res, allow_nan=False)
    nvt = run_md(cu, Broken(EMT(), k=20, mode=mode), ensemble="nvt", steps=100, seed=0)
    assert nvt["reason"] == reason and nvt["time_to_collapse_ps"] == pytest.approx(0.020)


def test_bond_deviation_collapse_detection():
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [R_MIN, 0, 0]])
    res = run_md(dimer, Pull(force=5.0), steps=400, temperature_K=10, seed=0, log_every=10)
    assert not res["stable"] and res["collapsed"] and not res["exploded"]
    assert res["reason"] == "bond_deviation" and res["n_bonds"] == 1
    assert 0.0 < res["time_to_collapse_ps"] < 0.4
    assert res["steps_completed"] == round(res["time_to_collapse_ps"] * 1000)
    # the collapse frame is logged
    assert res["series"]["stability_metric"][-1] > 0.5
    # without the pull it stays put; with training-mean reference lengths 0.6 Å off it collapses at t=0
    ok = run_md(dimer, LennardJones(sigma=1.0, epsilon=1.0, rc=10.0), steps=200, seed=0)
    assert ok["stable"]
    bonds = find_bonds(dimer)
    frames = [dimer.copy() for _ in range(3)]
    for fr, x in zip(frames, (R_MIN + 0.5, R_MIN + 0.6, R_MIN + 0.7)):
        fr.positions[1, 0] = x
    ref = reference_bond_lengths(frames, bonds)
    assert ref == pytest.approx([R_MIN + 0.6])
    off = run_md(
        dimer, LennardJones(sigma=1.0, epsilon=1.0, rc=10.0), steps=200, seed=0, bonds=bonds, reference_lengths=ref
    )
    assert off["collapsed"] and off["time_to_collapse_ps"] == 0.0


def test_periodic_site_criterion_robust_to_heat_but_detects_melting():
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    kw = dict(ensemble="nvt", timestep_fs=2.0, friction_per_fs=0.02, check_every=5, log_every=10, seed=1)
    hot = run_md(cu, EMT(), temperature_K=1200, steps=250, **kw)
    assert hot["criterion"] == "sites" and hot["stable"], hot["detail"]
    assert hot["mean_temperature_K"] > 700
    # per-bond 0.5 Å deviation would (wrongly) call the hot crystal collapsed
    assert not run_md(cu, EMT(), temperature_K=1200, steps=250, criterion="bonds", **kw)["stable"]
    melt = run_md(cu, EMT(), temperature_K=20000, steps=250, **kw)
    assert melt["collapsed"] and melt["reason"] == "site_displacement"
    assert melt["time_to_collapse_ps"] >= 0.2 - 1e-9  # the 200 fs window must fill first


def test_rdf_criterion():
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 1))
    kw = dict(
        ensemble="nvt",
        timestep_fs=2.0,
        friction_per_fs=0.02,
        check_every=10,
        log_every=10,
        seed=2,
        criterion="rdf",
        rdf_window_fs=100.0,
    )
    warm = run_md(cu, EMT(), temperature_K=1200, steps=150, **kw)  # reference: the smeared initial lattice
    assert warm["stable"] and warm["criterion"] == "rdf", warm["detail"]
    melt = run_md(cu, EMT(), temperature_K=20000, steps=150, **kw)
    assert melt["collapsed"] and melt["reason"] == "rdf_deviation"
    assert melt["time_to_collapse_ps"] >= 0.1 - 1e-9
    # an explicit reference on the same grid
    ref = smeared_rdf(cu)
    again = run_md(cu, EMT(), temperature_K=20000, steps=150, reference_rdf=ref, **kw)
    assert again["time_to_collapse_ps"] == melt["time_to_collapse_ps"]
    with pytest.raises(ValueError):
        run_md(cu, EMT(), steps=1, criterion="rdf", reference_rdf=ref[:5])


def test_stability_suite_aggregates():
    lj = LennardJones(sigma=1.0, epsilon=1.0, rc=10.0)
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [R_MIN, 0, 0]])
    suite = md_stability_suite([lj_cluster(), dimer], lj, steps=100, seed=0, log_every=10)
    assert suite["n_structures"] == 2 and suite["fraction_stable"] == 1.0
    assert suite["mean_time_to_collapse_ps"] is None and suite["mean_survival_time_ps"] == pytest.approx(0.1)
    assert "series" not in suite["runs"][0]
    broken = md_stability_suite(
        [bulk("Cu", "fcc", a=3.6, cubic=True)] * 2, Broken(EMT(), k=10**9, mode="nan"), steps=20
    )
    assert broken["fraction_stable"] == 1.0
    bad = md_stability_suite([bulk("Cu", "fcc", a=3.6, cubic=True)], Broken(EMT(), k=5, mode="raise"), steps=20)
    assert bad["fraction_stable"] == 0.0 and bad["unstable_reasons"] == {"calculator_error": 1}
    json.dumps(bad, allow_nan=False)


# ------------------------------------------------------------------------------------ relaxation


def test_relaxation_reaches_known_minimum_and_compares(tmp_path):
    lj = LennardJones(sigma=1.0, epsilon=1.0, rc=10.0)
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [1.3, 0, 0]])
    tri = Atoms("Ar3", positions=[[0, 0, 0], [1.2, 0, 0], [0.5, 1.0, 0.1]])
    res = relax_comparison([dimer, tri], lj, lj, fmax=1e-3, max_steps=1000, perturb=0.05, seed=3)
    assert res["model_success_rate"] == 1.0 and res["teacher_success_rate"] == 1.0
    assert res["rmsd_max_A"] < 1e-8 and abs(res["energy_error_mean_meV_atom"]) < 1e-6
    assert res["failures"] == []
    # the minimum itself
    work = dimer.copy()
    work.calc = lj
    from hessdistill.evaluation.relax import run_optimizer

    info = run_optimizer(work, optimizer="BFGS", fmax=1e-4)
    assert info["converged"] and work.get_distance(0, 1) == pytest.approx(R_MIN, abs=1e-4)
    # a different "model" (sigma 10% larger) ends at a clearly different geometry, higher on the teacher surface
    model = LennardJones(sigma=1.1, epsilon=1.0, rc=10.0)
    diff = relax_comparison([dimer, tri], model, lj, fmax=1e-3, max_steps=1000, seed=3)
    assert diff["model_success_rate"] == 1.0
    assert diff["rmsd_mean_A"] > 0.03 and diff["energy_error_mean_meV_atom"] > 1.0
    assert diff["structures"][0]["rmsd_A"] == pytest.approx((1.1 - 1.0) * R_MIN / 2, rel=1e-2)
    write_json(tmp_path / "relax.json", diff)


def test_relaxation_periodic_and_failures():
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    res = relax_comparison([cu], EMT(), EMT(), fmax=0.01, max_steps=300, perturb=0.1, seed=0)
    assert res["model_success_rate"] == 1.0
    assert res["rmsd_mean_A"] < 1e-3 and abs(res["energy_error_mean_meV_atom"]) < 1e-3
    s = res["structures"][0]
    assert s["periodic"] and s["model_steps"] > 0
    bad = relax_comparison([cu], Broken(EMT(), k=3, mode="raise"), EMT(), seed=0)
    assert bad["model_success_rate"] == 0.0 and bad["teacher_success_rate"] == 1.0
    assert "model blew up" in bad["failures"][0]["model_error"]
    nan = relax_comparison([cu], Broken(EMT(), k=3, mode="nan"), EMT(), seed=0, max_steps=20)
    assert nan["model_success_rate"] == 0.0 and "non-finite" in nan["failures"][0]["model_error"]
    assert nan["structures"][0]["model_steps"] <= 3
    json.dumps(nan, allow_nan=False)
    slow = relax_comparison([cu], EMT(), EMT(), fmax=1e-6, max_steps=2, seed=0)
    assert slow["model_success_rate"] == 0.0 and "not converged" in slow["failures"][0]["model_error"]


def test_kabsch_rmsd_and_periodic_rmsd():
    p = np.random.default_rng(0).normal(size=(5, 3))
    q = p @ random_rotation(1).T + 3.0
    assert kabsch_rmsd(p, q) < 1e-10
    from hessdistill.evaluation.relax import periodic_rmsd

    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    shifted = cu.copy()
    shifted.positions += np.array([0.3, 3.5, -0.2])  # rigid shift across the boundary
    shifted.wrap()
    assert periodic_rmsd(cu, shifted) < 1e-10


# --------------------------------------------------------------------- hessdistill teachers through ASE


def test_teacher_calculator_and_autograd_hessian():
    from hessdistill.teachers import load_teacher
    from hessdistill.teachers.calculator import TeacherCalculator

    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    calc = TeacherCalculator(teacher)
    start = Atoms("CH2", positions=[[0, 0, 0], [1.2, 0.1, 0], [-0.5, 1.1, 0.2]])
    # FD of the calculator's forces (the "model" route) against the teacher's autograd Hessian
    res = vibrational_comparison(start, calc, calc, teacher_hessian_fn=teacher.hessian, fmax=1e-4)
    assert res["teacher_relax_converged"] and res["n_modes"] == 3
    assert res["freq_max_abs_cm1"] < 0.5 and min(res["teacher_cm1"]) > 0
    md = run_md(start, calc, steps=50, temperature_K=100, timestep_fs=0.5, seed=0, log_every=10)
    assert md["steps_completed"] == 50 and md["max_abs_dE_meV_atom"] is not None
    json.dumps(md, allow_nan=False)


def test_training_reference_is_the_mean_over_frames_of_the_same_composition():
    """The paper's MD reference: bond lengths averaged over the training frames with the same atoms in the same
    order; frames of another composition or atom order do not count; no match gives None (start lengths)."""
    from ase.build import molecule

    from hessdistill.evaluation.md import bond_lengths, find_bonds, training_reference

    start = molecule("CH3CH2OH")
    bonds = find_bonds(start)
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(4):
        f = start.copy()
        f.positions += rng.normal(scale=0.02, size=f.positions.shape)
        frames.append(f)
    other = molecule("CH3OCH3")  # same formula, other atom order and bonds
    lengths, n = training_reference(start, frames + [other, molecule("H2O")], bonds)
    assert n == 4
    expected = np.mean([bond_lengths(f.positions, f.cell, bonds) for f in frames], axis=0)
    assert np.allclose(lengths, expected, atol=1e-12)
    assert training_reference(start, [other], bonds) == (None, 0)


def test_paper_md_rule_checks_bonds_at_the_logged_frames_only():
    """The paper's rule as protocol keys: bond_reference training, check_every = log_every (checks at logged
    frames only), criterion bonds, max_deviation 0.5 Å."""
    from hessdistill.evaluation.protocols import merge_config

    c = merge_config({"md": {"check_every": 10, "log_every": 10, "criterion": "bonds", "bond_reference": "training"}})
    assert c["md"]["check_every"] == 10 and merge_config(None)["md"]["check_every"] == 1
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [R_MIN, 0, 0]])
    every = run_md(dimer, Pull(force=5.0), steps=400, temperature_K=10, seed=0, log_every=10, check_every=1)
    logged = run_md(dimer, Pull(force=5.0), steps=400, temperature_K=10, seed=0, log_every=10, check_every=10)
    assert every["collapsed"] and logged["collapsed"]
    step_every = round(every["time_to_collapse_ps"] * 1000)
    step_logged = round(logged["time_to_collapse_ps"] * 1000)
    assert step_logged % 10 == 0 and step_every <= step_logged < step_every + 10
    assert step_every % 10 != 0  # the checks really differ (else this test could not tell them apart)
