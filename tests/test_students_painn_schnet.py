"""PaiNN and SchNet students: parameter counts, symmetries, derivatives, smoothness, batching, configs."""

from __future__ import annotations

import contextlib
import copy
import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from hessdistill.core.errors import HessdistillError
from hessdistill.core.graphs import atoms_to_data, batch_atoms, collate
from hessdistill.students import build_student
from hessdistill.students.painn import PaiNN
from hessdistill.students.schnet import SchNet

CUT = 4.0


def tiny(kind: str, **kw):
    torch.manual_seed(0)
    if kind == "painn":
        m = PaiNN(hidden=8, num_layers=2, num_rbf=6, cutoff=CUT, **kw)
    elif kind == "painn_direct":
        m = PaiNN(hidden=8, num_layers=2, num_rbf=6, cutoff=CUT, direct_forces=True, **kw)
    else:
        m = SchNet(hidden=8, num_filters=8, num_interactions=2, num_rbf=6, cutoff=CUT, **kw)
    # non-trivial normalisation so the base-class scaling is exercised
    m.set_energy_scale(1.7)
    m.element_energy[1] = -0.5
    m.element_energy[6] = -3.0
    return m.double().eval()


KINDS = ["painn", "painn_direct", "schnet"]


def ethanol():
    a = molecule("CH3CH2OH")
    a.rattle(0.05, seed=1)
    return a


def silicon():
    a = bulk("Si", "diamond", a=5.43, cubic=True)  # 8 atoms
    a.rattle(0.08, seed=2)
    return a


def predict(model, atoms_list, *, dtype=torch.float64, cutoff=CUT):
    b = batch_atoms(atoms_list, cutoff, dtype=dtype)
    e, f = model(b, create_graph=False)
    return e.detach().numpy(), f.detach().numpy()


def rotation(seed=3):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


# ----------------------------------------------------------------------------- sizes
def test_default_parameter_counts():
    assert PaiNN().n_params == 946_689
    assert PaiNN(direct_forces=True).n_params == 1_033_219
    assert SchNet().n_params == 69_249
    assert PaiNN().feature_dim == 128 and SchNet().feature_dim == 64
    with pytest.raises(HessdistillError, match="direct"):
        SchNet(direct_forces=True)


# ----------------------------------------------------------------------------- symmetries
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("system", ["molecule", "crystal"])
def test_invariance_and_equivariance(kind, system):
    model = tiny(kind)
    atoms = ethanol() if system == "molecule" else silicon()
    e0, f0 = predict(model, [atoms])
    assert np.all(np.isfinite(f0)) and np.abs(f0).max() > 1e-6

    rot = rotation()
    a = atoms.copy()
    a.positions = a.positions @ rot.T
    a.cell = a.cell.array @ rot.T
    e, f = predict(model, [a])
    np.testing.assert_allclose(e, e0, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(f, f0 @ rot.T, atol=1e-9)

    a = atoms.copy()
    a.translate([0.7, -1.3, 2.1])
    if system == "crystal":
        a.wrap()
    e, f = predict(model, [a])
    np.testing.assert_allclose(e, e0, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(f, f0, atol=1e-9)

    perm = np.random.default_rng(4).permutation(len(atoms))
    e, f = predict(model, [atoms[perm]])
    np.testing.assert_allclose(e, e0, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(f, f0[perm], atol=1e-9)

    if system == "crystal":
        # an equivalent cell (unimodular change of basis) with atoms wrapped into it
        a = atoms.copy()
        c = a.cell.array
        a.set_cell(np.array([c[0] + c[1], c[1], c[2] - c[0]]), scale_atoms=False)
        a.wrap()
        assert not np.allclose(a.positions, atoms.positions)
        e, f = predict(model, [a])
        np.testing.assert_allclose(e, e0, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(f, f0, atol=1e-9)


# ----------------------------------------------------------------------------- derivatives
@pytest.mark.parametrize("kind", ["painn", "schnet"])
def test_conservative_forces_match_finite_differences(kind):
    model = tiny(kind)
    atoms = ethanol()
    _, f = predict(model, [atoms])
    h = 1e-5
    for idx, k in [(0, 0), (2, 1), (5, 2), (8, 0)]:
        ap, am = atoms.copy(), atoms.copy()
        ap.positions[idx, k] += h
        am.positions[idx, k] -= h
        fd = -(predict(model, [ap])[0][0] - predict(model, [am])[0][0]) / (2 * h)
        assert abs(fd - f[idx, k]) < 1e-7 * max(1.0, abs(fd))


def force_jacobian(model, atoms):
    """J[a, b] = dF_a/dx_b (3N x 3N) by one VJP per row, with create_graph (as in Hessian training)."""
    b = batch_atoms([atoms], CUT)
    _, f = model(b, create_graph=True)
    n = f.numel()
    rows = []
    for a in range(n):
        v = torch.zeros(n, dtype=f.dtype)
        v[a] = 1.0
        (g,) = torch.autograd.grad(f.reshape(-1), b.pos, grad_outputs=v, create_graph=True, retain_graph=True)
        rows.append(g.reshape(-1))
    return torch.stack(rows).detach().numpy()


@pytest.mark.parametrize("kind", KINDS)
def test_double_backprop_jacobian_matches_finite_differences(kind):
    model = tiny(kind)
    atoms = Atoms("CHOH", positions=[[0, 0, 0], [1.05, 0.1, -0.1], [-0.6, 1.2, 0.2], [-1.4, 1.3, 0.7]])
    jac = force_jacobian(model, atoms)
    h = 1e-4
    fd = np.zeros_like(jac)
    for col in range(jac.shape[1]):
        ap, am = atoms.copy(), atoms.copy()
        ap.positions.reshape(-1)[col] += h
        am.positions.reshape(-1)[col] -= h
        fd[:, col] = (predict(model, [ap])[1].reshape(-1) - predict(model, [am])[1].reshape(-1)) / (2 * h)
    assert np.abs(jac - fd).max() < 1e-5 * np.abs(fd).max()
    if model.conservative:
        np.testing.assert_allclose(jac, jac.T, atol=1e-12 * np.abs(jac).max())
    else:
        assert np.abs(jac - jac.T).max() > 1e-6  # a direct head is not a gradient field


@pytest.mark.parametrize("kind", KINDS)
def test_hessian_row_loss_reaches_parameters(kind):
    model = tiny(kind).train()
    b = batch_atoms([ethanol(), silicon()], CUT)
    _, f = model(b, create_graph=True)
    gen = torch.Generator().manual_seed(5)
    loss = 0.0
    for _ in range(4):
        v = torch.randn(f.shape, generator=gen, dtype=f.dtype)
        (row,) = torch.autograd.grad(f, b.pos, grad_outputs=v, create_graph=True)
        loss = loss + (row**2).mean()
    loss = loss + (f**2).mean()
    loss.backward()
    with_grad = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().max() > 0]
    names = [n for n, _ in model.named_parameters()]
    assert len(with_grad) >= 0.8 * len(names), sorted(set(names) - set(with_grad))
    key = "messages.0.filter.weight" if kind.startswith("painn") else "interactions.0.filter_net.0.weight"
    assert key in with_grad


@pytest.mark.parametrize("kind", KINDS)
def test_smooth_at_cutoff(kind):
    model = tiny(kind)
    out = {}
    for sign in (-1, 1):
        d = CUT + sign * 1e-6
        atoms = Atoms("CH", positions=[[0, 0, 0], [d * 0.6, d * 0.8, 0.0]])
        b = batch_atoms([atoms], CUT)
        assert b.edge_index.shape[1] == (2 if sign < 0 else 0)
        e, f = model(b, create_graph=True)
        (row,) = torch.autograd.grad(f[1, 0], b.pos)
        out[sign] = (e.item(), f.detach().numpy(), row.numpy())
    assert abs(out[-1][0] - out[1][0]) < 1e-12
    np.testing.assert_allclose(out[-1][1], out[1][1], atol=1e-10)
    np.testing.assert_allclose(out[-1][2], out[1][2], atol=1e-6)  # Hessian is continuous (C^2 envelope)


# ----------------------------------------------------------------------------- batching, configs, dtypes
@pytest.mark.parametrize("kind", KINDS)
def test_batch_equals_single(kind):
    model = tiny(kind)
    structures = [ethanol(), silicon(), molecule("H2O")]
    e, f = predict(model, structures)
    start = 0
    for k, a in enumerate(structures):
        e1, f1 = predict(model, [a])
        np.testing.assert_allclose(e[k], e1[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(f[start : start + len(a)], f1, atol=1e-12)
        start += len(a)


@pytest.mark.parametrize("kind", KINDS)
def test_config_rebuild(kind):
    model = tiny(kind)
    cfg = json.loads(json.dumps(model.config()))
    clone = build_student(cfg).double()
    sd, sd2 = model.state_dict(), clone.state_dict()
    assert sd.keys() == sd2.keys()
    assert all(sd[k].shape == sd2[k].shape for k in sd)
    clone.load_state_dict(sd)
    clone.eval()
    np.testing.assert_allclose(predict(clone, [ethanol()])[1], predict(model, [ethanol()])[1], atol=0)


@pytest.mark.parametrize("kind", ["painn", "schnet"])
def test_embedding_init(kind):
    rng = np.random.default_rng(6)
    table = rng.normal(size=(3, 5))
    init = {"numbers": [1, 6, 8], "table": table.tolist()}
    model = tiny(kind, embedding_init=init)
    assert "embedding.teacher_table" in dict(model.named_buffers())
    assert "embedding.proj.weight" in dict(model.named_parameters())
    assert not any("teacher_table" in n for n, _ in model.named_parameters())
    e, f = predict(model, [ethanol()])
    assert np.all(np.isfinite(f))
    clone = build_student(json.loads(json.dumps(model.config()))).double()
    clone.load_state_dict(model.state_dict())
    np.testing.assert_allclose(predict(clone.eval(), [ethanol()])[0], e)
    with pytest.raises(HessdistillError, match=r"Si \(Z=14\)"):
        predict(model, [silicon()])
    with pytest.raises(HessdistillError):
        tiny(kind, embedding_init={"numbers": [1, 6], "table": table.tolist()})


@pytest.mark.parametrize("kind", KINDS)
def test_float32_matches_float64(kind):
    m64 = tiny(kind)
    m32 = copy.deepcopy(m64).float()
    structures = [ethanol(), silicon()]
    e64, f64 = predict(m64, structures)
    e32, f32 = predict(m32, structures, dtype=torch.float32)
    assert e32.dtype == np.float32 and f32.dtype == np.float32
    np.testing.assert_allclose(e32, e64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f32, f64, rtol=1e-4, atol=1e-4 * np.abs(f64).max())


# ----------------------------------------------------------------------------- host-device synchronisation
@contextlib.contextmanager
def count_host_syncs():
    """Record (by name) the calls that make the host wait for the device when tensors live on a GPU.

    Patched for the duration: tensor -> Python conversions (item, tolist, int(), bool(), ...), copies to the
    host (cpu, numpy), data-dependent sizes (nonzero, unique, masked_select, boolean-mask indexing,
    repeat_interleave without ``output_size``).
    """
    calls = []
    saved = []

    def patch(owner, name, needs_sync=lambda *a, **k: True):
        orig = getattr(owner, name)
        own = name in vars(owner)  # inherited from the C base: restored by deleting the patch (see below)

        def counted(*args, **kwargs):
            if needs_sync(*args, **kwargs):
                calls.append(name)
            return orig(*args, **kwargs)

        saved.append((owner, name, orig, own))
        setattr(owner, name, counted)

    def bool_index(_, idx):
        items = idx if isinstance(idx, tuple) else (idx,)
        return any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in items)

    def no_output_size(*args, **kwargs):
        return "output_size" not in kwargs and (
            len(args) > 1 and isinstance(args[1], torch.Tensor) or isinstance(kwargs.get("repeats"), torch.Tensor)
        )

    for name in (
        "item",
        "tolist",
        "cpu",
        "numpy",
        "__int__",
        "__float__",
        "__bool__",
        "__index__",
        "nonzero",
        "unique",
        "masked_select",
    ):
        patch(torch.Tensor, name)
    for name in ("nonzero", "unique", "masked_select", "argwhere"):
        patch(torch, name)
    patch(torch, "repeat_interleave", no_output_size)
    patch(torch.Tensor, "repeat_interleave", no_output_size)

    class BoolIndexing(torch.overrides.TorchFunctionMode):
        """Boolean-mask indexing, seen through __torch_function__: patching Tensor.__getitem__ on the class would
        change its type slots for the rest of the process (0-d tensors would look like sequences)."""

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.Tensor.__getitem__ and bool_index(*args):
                calls.append("__getitem__")
            return func(*args, **(kwargs or {}))

    try:
        with BoolIndexing():
            yield calls
    finally:
        # setting an inherited special method (e.g. __getitem__) back as an attribute would change the type's
        # slots (a 0-d tensor would then look like a sequence to torch.tensor); delete the patch instead
        for owner, name, orig, own in reversed(saved):
            if own:
                setattr(owner, name, orig)
            else:
                delattr(owner, name)


def training_step(model, batch):
    """Forces with create_graph, one Hessian-row VJP and a backward of a loss on all three (as in training)."""
    batch.pos.requires_grad_(True)
    v = torch.zeros_like(batch.pos)
    v[0, 0] = 1.0
    with count_host_syncs() as calls:
        e, f = model(batch, create_graph=True)
        (row,) = torch.autograd.grad(f, batch.pos, v, create_graph=True)
        ((e**2).sum() + (f**2).sum() + (row**2).sum()).backward()
    return calls


@pytest.mark.parametrize("kind", KINDS + ["painn_table"])
def test_prepared_forward_has_no_host_syncs(kind):
    init = {"numbers": [1, 6, 8, 14], "table": np.random.default_rng(6).normal(size=(4, 5)).tolist()}
    model = tiny("painn", embedding_init=init) if kind == "painn_table" else tiny(kind)
    structures = [ethanol(), silicon(), molecule("H2O")]
    prepared = collate([atoms_to_data(a, CUT, student=model) for a in structures])
    assert model.prepared(prepared)
    assert training_step(model, prepared) == []
    plain = batch_atoms(structures, CUT)  # not prepared: the element check runs (and is counted) in the forward
    assert not model.prepared(plain) and "cpu" in training_step(model, plain)
    forces = model(prepared, create_graph=False)[1].detach().numpy()
    np.testing.assert_array_equal(forces, predict(model, structures)[1])


@pytest.mark.parametrize("kind", ["painn", "schnet"])
def test_unknown_elements_fail_where_the_data_is_built(kind):
    init = {"numbers": [1, 6, 8], "table": np.random.default_rng(6).normal(size=(3, 5)).tolist()}
    name = "PaiNN" if kind == "painn" else "SchNet"
    with pytest.raises(HessdistillError, match=rf"{name}: element\(s\) Si \(Z=14\) not in the teacher embedding"):
        atoms_to_data(silicon(), CUT, student=tiny(kind, embedding_init=init))
    small = tiny(kind, num_elements=10)
    with pytest.raises(HessdistillError, match=rf"(?s){name}: element\(s\) Si \(Z=14\) outside .*num_elements > 14"):
        atoms_to_data(silicon(), CUT, student=small)
    with pytest.raises(HessdistillError, match=r"Si \(Z=14\)"):  # an unprepared batch: checked in the forward
        predict(small, [silicon()])
    assert atoms_to_data(ethanol(), CUT, student=small).prepared_for == small.data_tag


def test_painn_curvature_stays_bounded_at_symmetric_structures():
    """At a cubic perovskite the vector features vanish by symmetry; with the legacy norm eps (1e-8) the Hessian
    there is dominated by sqrt(|v|^2 + eps)'s 1/sqrt(eps) curvature, with eps = 1 it is of the size of the Hessian
    at a slightly distorted structure (where the features do not vanish)."""
    import numpy as np
    from ase import Atoms

    from hessdistill.core.graphs import atoms_to_data, collate
    from hessdistill.core.hessian import hessian_rows
    from hessdistill.students import build_student

    cubic = Atoms(
        ["Sr", "Ti", "O", "O", "O"],
        scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        cell=np.eye(3) * 3.9,
        pbc=True,
    )
    distorted = cubic.copy()
    distorted.positions += np.random.default_rng(0).normal(scale=0.05, size=(5, 3))

    def hess_norm(model, atoms):
        b = collate([atoms_to_data(atoms, model.cutoff, dtype=torch.float64)])
        b.pos.requires_grad_(True)
        _, f = model(b, create_graph=True)
        return float(np.linalg.norm(hessian_rows(f, b.pos, np.arange(15)).detach().numpy()))

    ratios = {}
    for eps in (1e-8, 1.0):
        torch.manual_seed(0)
        m = build_student(
            {"arch": "painn", "hidden": 16, "num_layers": 2, "num_rbf": 8, "cutoff": 4.5, "vector_norm_eps": eps}
        ).double()
        ratios[eps] = hess_norm(m, cubic) / hess_norm(m, distorted)
    assert ratios[1.0] < 3.0
    assert ratios[1e-8] > 10 * ratios[1.0]


def test_old_painn_checkpoints_keep_the_norm_they_were_trained_with(tmp_path):
    from hessdistill.students import build_student
    from hessdistill.students.checkpoint import load_student

    m = build_student({"arch": "painn", "hidden": 8, "num_layers": 1, "num_rbf": 4, "cutoff": 4.0})
    assert m.hparams["vector_norm_eps"] == 1.0
    cfg = m.config()
    del cfg["vector_norm_eps"]  # a checkpoint written before the parameter existed
    torch.save(
        {"format": "hessdistill.student", "student_config": cfg, "dtype": "float32", "state_dict": m.state_dict()},
        tmp_path / "old.pt",
    )
    old, _ = load_student(tmp_path / "old.pt")
    assert old.hparams["vector_norm_eps"] == 1e-8
