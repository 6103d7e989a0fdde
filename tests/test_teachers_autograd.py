"""CHGNet and SevenNet teachers (pretrained weights shipped in their wheels), checked against the packages'
own ASE calculators, finite differences and each other's dtypes.

Structures are small and away from equilibrium: rattled ethanol (9 atoms, a molecule) and a rattled 8-atom
cubic Si cell (periodic).  Each test is skipped when its package is not installed.

Finite-difference steps: CHGNet's potential-energy surface is smooth but its curvature changes quickly
(Hessian elements of ethanol vary by ~15 % over 0.002 Å, measured), so the Hessian check uses a 4th-order
stencil with h = 1e-4 Å; in float64 that gives ~1e-6 relative agreement for CHGNet and ~1e-12 for SevenNet.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from hessdistill.core import hessian as hess
from hessdistill.core.errors import StructureError, TeacherError, UnsupportedElementError
from hessdistill.teachers import load_teacher

KINDS = ("chgnet", "sevenn")
STRUCTURES = ("ethanol", "si8")
FD_STEP = 1e-4
FD_ORDER = 4


# ---------------------------------------------------------------------------------------------- structures
def _ethanol() -> Atoms:
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=1)
    return atoms


def _si8() -> Atoms:
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=2)
    return atoms


_BUILD = {"ethanol": _ethanol, "si8": _si8}


def _structure(name: str) -> Atoms:
    return _BUILD[name]()


def _moved(atoms: Atoms, positions) -> Atoms:
    out = atoms.copy()
    out.positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    return out


def _rows(atoms: Atoms) -> list[int]:
    n = 3 * len(atoms)
    return [0, 7, n - 1]  # three rows on three different atoms


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def teacher_cache():
    return {}


@pytest.fixture
def get_teacher(teacher_cache):
    """get_teacher(kind, dtype) -> a cached teacher; skips when the package is missing."""

    def get(kind: str, dtype: str = "float64"):
        pytest.importorskip(kind)
        key = (kind, dtype)
        if key not in teacher_cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                teacher_cache[key] = load_teacher(kind, device="cpu", dtype=dtype)
        return teacher_cache[key]

    return get


@pytest.fixture(scope="module")
def calculators():
    return {}


def _reference(kind: str, atoms: Atoms, teacher, calculators) -> tuple[float, np.ndarray]:
    """Energy and forces from the package's own ASE calculator (float32 inside both packages)."""
    if kind not in calculators:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "chgnet":
                from chgnet.model.dynamics import CHGNetCalculator

                calculators[kind] = CHGNetCalculator(use_device="cpu")
            else:
                from sevenn.calculator import SevenNetCalculator

                calculators[kind] = SevenNetCalculator("7net-0", device="cpu")
    atoms = atoms.copy()
    if kind == "chgnet" and not atoms.pbc.any():
        # CHGNetCalculator needs a lattice: give it the very box the teacher uses
        lattice, offset = teacher.box_for(atoms)
        atoms = Atoms(atoms.numbers, positions=atoms.positions + offset, cell=lattice, pbc=True)
    atoms.calc = calculators[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(atoms.get_potential_energy()), np.asarray(atoms.get_forces(), dtype=np.float64)


def _sevenn_pipeline_float64(teacher, atoms: Atoms) -> tuple[float, np.ndarray]:
    """SevenNetCalculator.calculate step by step (numpy edge vectors, force module in eval mode), in float64.

    The calculator itself always feeds float32 data; this reproduces its route with the teacher's float64
    model, so it tests the positions-leaf route of the teacher against sevenn's own graph route.
    """
    import sevenn._keys as KEY
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph

    raw = unlabeled_atoms_to_graph(atoms, teacher.cutoff, with_shift=False)
    exact = {
        k: np.array(v) for k, v in raw.items() if isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating)
    }
    data = AtomGraphData.from_numpy_dict(raw)
    for key, value in exact.items():
        data[key] = torch.as_tensor(value, dtype=torch.float64)
    assert not teacher.model._modules["force_output"].training
    out = teacher.model(data)
    return float(out[KEY.PRED_TOTAL_ENERGY].detach()), out[KEY.PRED_FORCE].detach().numpy().astype(np.float64)


def _energy_fd(teacher, atoms: Atoms, coord: int, h: float = FD_STEP) -> float:
    """dE/dx_coord by the 4th-order central stencil."""
    pos = atoms.positions.reshape(-1).copy()
    acc = 0.0
    for disp, w in ((2.0, -1.0), (1.0, 8.0), (-1.0, -8.0), (-2.0, 1.0)):
        p = pos.copy()
        p[coord] += disp * h
        acc += w * teacher.energy_forces(_moved(atoms, p))[0]
    return acc / (12.0 * h)


# ---------------------------------------------------------------------------------------------- basics
@pytest.mark.parametrize("kind", KINDS)
def test_metadata_and_forward_result(kind, get_teacher):
    t = get_teacher(kind)
    assert t.conservative is True
    assert t.hessian_method == "autograd"
    md = t.metadata()
    assert md["teacher_dtype"] == "float64"
    if kind == "chgnet":
        assert t.name == "chgnet:0.3.0"
        assert "0.3.0" in t.version and "chgnet-" in t.version
        assert t.supported_numbers == frozenset(range(1, 95))
    else:
        assert t.name == "sevenn:7net-0"
        assert "7net-0" in t.version and "sevenn-" in t.version
        assert {1, 6, 8, 14, 26, 83} <= t.supported_numbers and len(t.supported_numbers) == 89

    atoms = _si8()
    res = t.forward(atoms, create_graph=True)
    assert res.positions.is_leaf and res.positions.requires_grad
    assert res.positions.shape == (8, 3) and res.forces.shape == (8, 3)
    assert res.energy.ndim == 0
    assert res.positions.dtype == res.forces.dtype == torch.float64
    assert res.forces.requires_grad, "forces must carry a graph back to the positions for Hessian rows"
    res2 = t.forward(atoms, create_graph=False)
    assert not res2.forces.requires_grad
    np.testing.assert_allclose(res2.forces.numpy(), res.forces.detach().numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", STRUCTURES)
def test_structures_are_off_equilibrium(name, get_teacher):
    t = get_teacher("sevenn") if _has("sevenn") else get_teacher("chgnet")
    _, f = t.energy_forces(_structure(name))
    assert np.abs(f).max() > 0.5  # eV/Å: the FD checks below are not trivially satisfied


def _has(mod: str) -> bool:
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


# ---------------------------------------------------------------------------------------------- vs calculators
@pytest.mark.parametrize("name", STRUCTURES)
@pytest.mark.parametrize("kind", KINDS)
def test_matches_ase_calculator(kind, name, get_teacher, calculators):
    atoms = _structure(name)
    t64 = get_teacher(kind, "float64")
    t32 = get_teacher(kind, "float32")
    e_ref, f_ref = _reference(kind, atoms, t64, calculators)
    e64, f64 = t64.energy_forces(atoms)
    e32, f32 = t32.energy_forces(atoms)
    # both calculators run in float32: the float32 teacher reproduces them to float32 round-off
    assert abs(e32 - e_ref) < 2e-5
    assert np.abs(f32 - f_ref).max() < 1e-4
    # the float64 teacher agrees with them to the calculators' float32 precision
    assert abs(e64 - e_ref) < 2e-5
    assert np.abs(f64 - f_ref).max() < 1e-4
    if kind == "sevenn":
        # and with sevenn's own (numpy edge-vector) route run in float64, to float64 precision
        e_pipe, f_pipe = _sevenn_pipeline_float64(t64, atoms)
        assert abs(e64 - e_pipe) <= 1e-8 * abs(e_pipe)
        assert np.abs(f64 - f_pipe).max() <= 1e-8 * np.abs(f_pipe).max()


@pytest.mark.parametrize("kind", KINDS)
def test_triclinic_cell_and_unwrapped_positions(kind, get_teacher, calculators):
    t = get_teacher(kind)
    tri = bulk("Si", "diamond", a=5.43).repeat((2, 1, 1))  # 4 atoms, non-orthogonal (fcc primitive) cell
    tri.rattle(0.05, seed=3)
    e_ref, f_ref = _reference(kind, tri, t, calculators)
    e, f = t.energy_forces(tri)
    assert abs(e - e_ref) < 2e-5
    assert np.abs(f - f_ref).max() < 1e-4
    # moving atoms by lattice vectors changes nothing (positions need not be wrapped into the cell)
    si = _si8()
    moved = si.copy()
    moved.positions[3] += si.cell[0] - 2 * si.cell[2]
    moved.positions[5] -= si.cell[1]
    e1, f1 = t.energy_forces(si)
    e2, f2 = t.energy_forces(moved)
    assert abs(e1 - e2) < 1e-9 and np.abs(f1 - f2).max() < 1e-9
    np.testing.assert_allclose(t.hessian_rows(moved, [9, 16]), t.hessian_rows(si, [9, 16]), rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------------------------- derivatives
@pytest.mark.parametrize("name", STRUCTURES)
@pytest.mark.parametrize("kind", KINDS)
def test_forces_are_minus_energy_gradient(kind, name, get_teacher):
    t = get_teacher(kind)
    atoms = _structure(name)
    _, f = t.energy_forces(atoms)
    f = f.reshape(-1)
    for coord in (0, 4, 3 * len(atoms) - 2):
        fd = -_energy_fd(t, atoms, coord)
        assert abs(fd - f[coord]) < 1e-5 * max(1.0, np.abs(f).max()), (coord, fd, f[coord])


@pytest.mark.parametrize("name", STRUCTURES)
@pytest.mark.parametrize("kind", KINDS)
def test_hessian_rows_match_finite_differences(kind, name, get_teacher):
    t = get_teacher(kind)
    atoms = _structure(name)
    rows = _rows(atoms)
    h = t.hessian_rows(atoms, rows)
    assert h.shape == (len(rows), 3 * len(atoms))

    def force_fn(p):
        return t.energy_forces(_moved(atoms, p))[1]

    fd = hess.finite_difference_columns(force_fn, atoms.positions, rows, step=FD_STEP, order=FD_ORDER)
    for i, r in enumerate(rows):
        rel = np.abs(h[i] - fd[i]).max() / np.abs(h[i]).max()
        assert rel < 1e-4, f"{kind} {name} row {r}: relative error {rel:.3g}"


@pytest.mark.parametrize("name", STRUCTURES)
@pytest.mark.parametrize("kind", KINDS)
def test_full_hessian_symmetric_and_translation_invariant(kind, name, get_teacher):
    t = get_teacher(kind)
    atoms = _structure(name)
    h = t.hessian(atoms)
    n = 3 * len(atoms)
    assert h.shape == (n, n)
    assert hess.symmetry_error(h) < 1e-6
    assert np.abs(hess.translation_sum(h)).max() < 1e-6 * np.abs(h).max()


@pytest.mark.parametrize("kind", KINDS)
def test_float32_agrees_with_float64(kind, get_teacher):
    t64 = get_teacher(kind, "float64")
    t32 = get_teacher(kind, "float32")
    assert t32.metadata()["teacher_dtype"] == "float32"
    for name in STRUCTURES:
        atoms = _structure(name)
        e64, f64 = t64.energy_forces(atoms)
        e32, f32 = t32.energy_forces(atoms)
        assert f32.dtype == np.float64 and f32.shape == f64.shape
        assert abs(e32 - e64) < 2e-5  # ~5e-7 relative: float32 round-off of a ~45 eV total
        assert np.abs(f32 - f64).max() < 1e-4
        rows = _rows(atoms)
        h64 = t64.hessian_rows(atoms, rows)
        h32 = t32.hessian_rows(atoms, rows)
        assert np.abs(h32 - h64).max() / np.abs(h64).max() < 2e-4


@pytest.mark.parametrize("kind", KINDS)
def test_batched_and_loop_vjp_agree(kind, get_teacher):
    t = get_teacher(kind)
    for name in STRUCTURES:
        atoms = _structure(name)
        res = t.forward(atoms, create_graph=True)
        rows = _rows(atoms)
        loop = hess.force_jacobian_rows(res.forces, res.positions, rows, method="loop", key=f"test-{kind}")
        with warnings.catch_warnings():
            # should vmap fail for a model, the engine falls back to the loop with a RuntimeWarning
            warnings.simplefilter("ignore", RuntimeWarning)
            batched = hess.force_jacobian_rows(res.forces, res.positions, rows, method="batched", key=f"test-{kind}")
        np.testing.assert_allclose(batched.numpy(), loop.numpy(), rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kind", KINDS)
def test_unsupported_element(kind, get_teacher):
    t = get_teacher(kind)
    bad_z = min(set(range(1, 119)) - set(t.supported_numbers))  # CHGNet: Am (95); SevenNet-0: Po (84)
    atoms = Atoms(numbers=[bad_z, 1], positions=[[0, 0, 0], [0, 0, 1.6]])
    with pytest.raises(UnsupportedElementError):
        t.energy_forces(atoms)
    with pytest.raises(UnsupportedElementError):
        t.hessian_rows(atoms, [0])


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_model_name(kind):
    pytest.importorskip(kind)
    with pytest.raises(TeacherError, match="unknown"):
        load_teacher(f"{kind}:no-such-model", device="cpu")


# ---------------------------------------------------------------------------------------------- CHGNet specifics
def test_chgnet_molecule_box_does_not_matter(get_teacher):
    pytest.importorskip("chgnet")
    from hessdistill.teachers.chgnet import CHGNetTeacher

    t = get_teacher("chgnet")
    big = CHGNetTeacher(device="cpu", dtype="float64", box_padding=15.0)
    atoms = _ethanol()
    assert big.box_for(atoms)[0][0, 0] > t.box_for(atoms)[0][0, 0] + 10.0
    # the default box: every periodic image lies beyond the 6 Å atom-graph cutoff
    edge = t.box_for(atoms)[0][0, 0]
    extent = np.ptp(atoms.positions, axis=0).max()
    assert edge - extent > t.atom_graph_cutoff
    e1, f1 = t.energy_forces(atoms)
    e2, f2 = big.energy_forces(atoms)
    assert abs(e1 - e2) < 1e-9
    assert np.abs(f1 - f2).max() < 1e-9
    h1 = t.hessian_rows(atoms, [2])
    h2 = big.hessian_rows(atoms, [2])
    assert np.abs(h1 - h2).max() < 1e-8


def test_chgnet_rejects_mixed_pbc(get_teacher):
    t = get_teacher("chgnet")
    atoms = _ethanol()
    atoms.cell = [20.0, 20.0, 20.0]
    atoms.pbc = [True, True, False]
    with pytest.raises(StructureError, match="pbc"):
        t.energy_forces(atoms)


def test_chgnet_bad_version_lists_shipped_ones():
    pytest.importorskip("chgnet")
    with pytest.raises(TeacherError, match="0.3.0"):
        load_teacher("chgnet:9.9.9", device="cpu")


# ---------------------------------------------------------------------------------------------- SevenNet specifics
def test_sevenn_model_names_resolve_offline():
    pytest.importorskip("sevenn")
    from hessdistill.teachers import sevenn as sv

    shipped = sv.available_models()
    assert "7net-0" in shipped
    path, display = sv.resolve_checkpoint("SevenNet-0")
    assert display == "7net-0" and os.path.isfile(path)
    with pytest.raises(TeacherError, match="unknown SevenNet model"):
        sv.resolve_checkpoint("7net-does-not-exist")


def test_sevenn_missing_checkpoint_is_a_clear_error():
    pytest.importorskip("sevenn")
    from hessdistill.teachers import sevenn as sv

    missing = [name for name in ("7net-omat", "7net-mf-ompa", "7net-omni") if name not in sv.available_models()]
    if not missing:
        pytest.skip("all downloadable SevenNet checkpoints happen to be present")
    with pytest.raises(TeacherError, match="not shipped"):
        load_teacher(f"sevenn:{missing[0]}", device="cpu")


def test_sevenn_bad_checkpoint_file(tmp_path):
    pytest.importorskip("sevenn")
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherError, match="cannot build SevenNet model"):
        load_teacher(f"sevenn:{bogus}", device="cpu")


def test_sevenn_force_module_left_in_eval_mode(get_teacher):
    t = get_teacher("sevenn")
    t.hessian_rows(_si8(), [0])
    assert not any(m.training for m in t.model.modules())
