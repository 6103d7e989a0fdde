"""The Hessian engine and the generic teachers against analytic truth."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from toy_models import lj_hessian

from hessdistill.core import hessian as hess
from hessdistill.core.errors import TeacherError
from hessdistill.teachers import load_teacher


def lj_cluster(seed=0):
    rng = np.random.default_rng(seed)
    pos = np.array([[0, 0, 0], [1.12, 0, 0], [0.56, 0.97, 0], [0.56, 0.32, 0.91], [1.6, 1.0, 0.8]], float)
    return Atoms("Ar5", positions=pos + rng.normal(scale=0.04, size=pos.shape))


@pytest.mark.parametrize("order,tol", [(2, 5e-5), (4, 5e-9)])
def test_ase_finite_difference_matches_analytic_lj(order, tol):
    """Documented accuracy: on a stiff LJ cluster (r ~ sigma) the error is ~25 h^2 (order 2), ~1e3 h^4 (order 4)."""
    atoms = lj_cluster()
    ref = lj_hessian(atoms.positions)
    errs = []
    for step in (2e-3, 1e-3):
        teacher = load_teacher("ase:ase.calculators.lj:LennardJones", rc=100.0, order=order, step=step)
        H = teacher.hessian(atoms)
        errs.append(np.abs(H - ref).max() / np.abs(ref).max())
    assert errs[1] < tol
    # halving the step divides the error by 2**order: the stencil converges as designed
    assert 0.7 * 2**order < errs[0] / errs[1] < 1.3 * 2**order
    rows = [0, 7, 14]
    np.testing.assert_allclose(teacher.hessian_rows(atoms, rows), H[rows], rtol=0, atol=1e-12)
    assert teacher.metadata()["hessian_method"] == "finite-difference"


def test_sample_rows_is_fixed_and_independent_of_order():
    a = hess.sample_rows(10, 4, seed=3, structure_key=17)
    b = hess.sample_rows(10, 4, seed=3, structure_key=17)
    c = hess.sample_rows(10, 4, seed=3, structure_key=18)
    assert np.array_equal(a, b) and len(set(a)) == 4 and (np.diff(a) > 0).all()
    assert not np.array_equal(a, c)
    assert np.array_equal(hess.sample_rows(2, 10, seed=0, structure_key=0), np.arange(6))
    with pytest.raises(ValueError):
        hess.sample_rows(3, 0, seed=0, structure_key=0)


@pytest.mark.parametrize("method", ["loop", "batched", "auto"])
def test_torch_teacher_rows_equal_autograd_hessian(method):
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=2)
    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    teacher.vjp_method = method
    H = teacher.hessian(atoms)
    pos = torch.tensor(atoms.positions, dtype=torch.float64)
    model = teacher.model
    ref = torch.autograd.functional.hessian(lambda p: model(p.reshape(-1, 3), None, None, None)[0], pos.reshape(-1))
    np.testing.assert_allclose(H, ref.numpy(), rtol=1e-10, atol=1e-10)
    assert hess.symmetry_error(H) < 1e-12
    assert np.abs(hess.translation_sum(H)).max() < 1e-10
    e, f = teacher.energy_forces(atoms)
    g = torch.autograd.functional.jacobian(lambda p: model(p.reshape(-1, 3), None, None, None)[0], pos.reshape(-1))
    np.testing.assert_allclose(f.reshape(-1), -g.numpy(), atol=1e-12)


def test_rows_subset_and_float32():
    atoms = molecule("H2O")
    atoms.rattle(0.1, seed=1)
    t64 = load_teacher("torch:toy_models:morse", dtype="float64")
    t32 = load_teacher("torch:toy_models:morse", dtype="float32")
    H = t64.hessian(atoms)
    rows = [8, 0, 3]
    np.testing.assert_allclose(t64.hessian_rows(atoms, rows), H[rows], atol=1e-12)
    h32 = t32.hessian_rows(atoms, rows)
    assert np.abs(h32 - H[rows]).max() / np.abs(H).max() < 1e-5
    with pytest.raises(ValueError, match="row indices"):
        t64.hessian_rows(atoms, [9])


def test_direct_force_teacher_gives_non_symmetric_rows_of_minus_dF_dx():
    atoms = molecule("CH4")
    atoms.rattle(0.1, seed=4)
    teacher = load_teacher("torch:toy_models:curl", dtype="float64")
    H = teacher.hessian(atoms)
    assert teacher.metadata()["conservative"] is False
    assert hess.symmetry_error(H) > 1e-2  # a direct-force "Hessian" is not symmetric

    def forces(p):
        return teacher.energy_forces(Atoms(atoms.numbers, positions=p))[1]

    cols = hess.finite_difference_columns(forces, atoms.positions, np.arange(3 * len(atoms)), step=1e-4, order=4)
    # FD gives columns of -dF/dx; the teacher's rows are rows of -dF/dx, i.e. the transpose
    np.testing.assert_allclose(H, cols.T, atol=1e-8)


def test_finite_difference_input_checks():
    with pytest.raises(ValueError, match="step"):
        hess.finite_difference_columns(lambda p: -p, np.zeros((1, 3)), [0], step=0)
    with pytest.raises(ValueError, match="order"):
        hess.finite_difference_columns(lambda p: -p, np.zeros((1, 3)), [0], order=3)
    h = hess.finite_difference_columns(lambda p: -2.0 * p, np.ones((2, 3)), range(6))
    np.testing.assert_allclose(h, 2.0 * np.eye(6), atol=1e-9)


def test_forces_without_graph_are_rejected():
    pos = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="create_graph"):
        hess.force_jacobian_rows(torch.zeros(2, 3), pos, [0])


@pytest.mark.parametrize(
    "name,match",
    [
        ("nonsense", "unknown teacher"),
        ("ase:ase.calculators.emt", "ase:<module>:<Class>"),
        ("ase:no_such_module_xyz:Calc", "cannot import"),
        ("ase:ase.calculators.emt:NoSuchCalc", "no calculator class"),
        ("mace-off", "say which model"),
        ("torch:toy_models:nope", "cannot find"),
    ],
)
def test_bad_teacher_names(name, match):
    with pytest.raises(TeacherError, match=match):
        load_teacher(name)


def test_unsupported_element_is_named():
    from hessdistill.core.errors import UnsupportedElementError

    teacher = load_teacher("torch:toy_models:morse")
    teacher.supported_numbers = frozenset({1, 6, 8})
    with pytest.raises(UnsupportedElementError, match="Cl"):
        teacher.energy_forces([molecule("H2O"), molecule("CH3Cl")])


def test_auto_route_is_chosen_per_size_class():
    hess._AUTO_CHOICE.clear()
    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    teacher.vjp_method = "auto"
    small, large = molecule("H2O"), molecule("CH3CH2OH")
    teacher.hessian_rows(small, [0, 1])
    teacher.hessian_rows(large, [0, 1])
    keys = {k for k in hess._AUTO_CHOICE if k[0] == teacher.name}
    assert keys == {(teacher.name, "cpu", 4), (teacher.name, "cpu", 16)}
    assert set(hess._AUTO_CHOICE.values()) <= {"loop", "batched"}
