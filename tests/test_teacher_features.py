"""Teacher node features and element embedding tables (inputs of the n2n and a2a distillation baselines)."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from scipy.spatial.transform import Rotation

from hessdistill.core.errors import TeacherError
from hessdistill.teachers import load_teacher

FEATURE_DIMS = {"chgnet": 64, "sevenn": 128}


@pytest.fixture(scope="module", params=["chgnet", "sevenn"])
def teacher(request):
    pytest.importorskip(request.param)
    return load_teacher(request.param, device="cpu", dtype="float64")


def _moved(atoms, seed):
    """A rigidly rotated and translated copy (cell and positions alike for crystals)."""
    rot = Rotation.random(random_state=seed).as_matrix()
    shift = np.random.default_rng(seed).normal(size=3) * 2.0
    out = atoms.copy()
    out.positions = atoms.positions @ rot.T + shift
    if atoms.pbc.all():
        out.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    return out


def _methanol():
    a = molecule("CH3OH")
    a.positions += np.random.default_rng(0).normal(scale=0.03, size=a.positions.shape)
    return a


def _crystal():
    a = bulk("NaCl", "rocksalt", a=5.64)
    a.positions[0] += [0.05, -0.03, 0.02]
    return a


def test_shapes_dims_and_determinism(teacher):
    kind = teacher.name.split(":")[0]
    assert teacher.supports_node_features
    assert teacher.feature_dim == FEATURE_DIMS[kind]
    for atoms in (_methanol(), _crystal()):
        x = teacher.node_features(atoms)
        assert x.shape == (len(atoms), teacher.feature_dim) and x.dtype == np.float64
        assert np.isfinite(x).all() and np.abs(x).max() > 0
        assert np.array_equal(x, teacher.node_features(atoms))


def test_features_from_the_labelling_pass(teacher):
    atoms = _methanol()
    x = teacher.node_features(atoms)
    e0, f0, h0 = teacher.labels(atoms, rows=[0, 4])
    e, f, h, xf = teacher.labels_with_features(atoms, rows=[0, 4])
    assert e == pytest.approx(e0, abs=1e-10)
    np.testing.assert_allclose(f, f0, atol=1e-10)
    np.testing.assert_allclose(h, h0, atol=1e-8)
    np.testing.assert_allclose(xf, x, atol=1e-12)
    e, f, h, xf = teacher.labels_with_features(atoms)
    assert h is None
    np.testing.assert_allclose(xf, x, atol=1e-12)


@pytest.mark.parametrize("make", [_methanol, _crystal], ids=["molecule", "crystal"])
def test_features_are_invariant(teacher, make):
    atoms = make()
    x = teacher.node_features(atoms)
    for seed in (1, 2):
        np.testing.assert_allclose(teacher.node_features(_moved(atoms, seed)), x, atol=1e-8, rtol=0)
    perm = np.random.default_rng(3).permutation(len(atoms))
    np.testing.assert_allclose(teacher.node_features(atoms[perm]), x[perm], atol=1e-8, rtol=0)


def test_element_embeddings_one_row_per_element(teacher):
    numbers, table = teacher.element_embeddings()
    assert numbers.dtype == np.int64 and len(set(numbers.tolist())) == len(numbers)
    assert set(numbers.tolist()) == set(teacher.supported_numbers)
    assert table.shape == (len(numbers), teacher.feature_dim) and np.isfinite(table).all()
    assert len({tuple(np.round(r, 12)) for r in table}) == len(numbers)  # distinct rows
    n2, t2 = teacher.element_embeddings()
    assert np.array_equal(numbers, n2) and np.array_equal(table, t2)


def test_chgnet_features_are_the_readout_input():
    pytest.importorskip("chgnet")
    t = load_teacher("chgnet", device="cpu", dtype="float64")
    atoms = _methanol()
    x = t.node_features(atoms)
    graph, _ = t._graph(atoms, requires_grad=False)
    with torch.no_grad():
        pred = t.model([graph], task="e", return_crystal_feas=True)
        # mlp_first: energy per atom = (sum_i mlp(x_i) + composition energy) / N
        site = t.model.mlp(torch.as_tensor(x, dtype=t.dtype)).sum()
        comp = t.model.composition_model([graph]).sum()
    assert t.model.mlp_first
    np.testing.assert_allclose(pred["crystal_fea"].reshape(-1).numpy(), x.sum(axis=0), atol=1e-10)
    assert t.model.is_intensive and t.model.composition_model.is_intensive
    assert float(site / len(atoms) + comp) == pytest.approx(float(pred["e"].reshape(-1)[0]), abs=1e-10)
    numbers, table = t.element_embeddings()
    np.testing.assert_array_equal(table, t.model.atom_embedding.embedding.weight.detach().numpy()[numbers - 1])


def test_sevenn_element_table_matches_the_model_embedding():
    pytest.importorskip("sevenn")
    t = load_teacher("sevenn", device="cpu", dtype="float64")
    atoms = _methanol()
    seen = []
    handle = t.model._modules["onehot_to_feature_x"].register_forward_hook(lambda m, i, o: seen.append(o["x"].clone()))
    try:
        t.energy_forces(atoms)
    finally:
        handle.remove()
    numbers, table = t.element_embeddings()
    row = {int(z): k for k, z in enumerate(numbers)}
    expected = table[[row[int(z)] for z in atoms.numbers]]
    np.testing.assert_allclose(seen[0].numpy(), expected, atol=1e-12)
    # 7net-0's last block is scalar-only: the features are the whole tensor entering the readout
    assert t.feature_dim == t.model._modules["reduce_input_to_hidden"].irreps_in.dim


def test_unsupported_teacher_gives_clear_error():
    t = load_teacher("ase:ase.calculators.emt:EMT")
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.5]])
    assert not t.supports_node_features and t.feature_dim is None
    with pytest.raises(TeacherError, match="does not provide node features"):
        t.node_features(atoms)
    with pytest.raises(TeacherError, match="does not provide an element embedding table"):
        t.element_embeddings()
    with pytest.raises(TeacherError, match="does not provide node features"):
        t.labels_with_features(atoms)
    toy = load_teacher("torch:toy_models:morse")
    with pytest.raises(TeacherError, match="does not provide node features"):
        toy.labels_with_features(molecule("H2O"))
