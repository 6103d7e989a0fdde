"""GemNet-T / GemNet-dT student: parameter counts, symmetries, derivatives, smoothness, batching."""

import pickle

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from test_students_painn_schnet import training_step

from hessdistill.core.errors import HessdistillError
from hessdistill.core.graphs import atoms_to_data, batch_atoms, collate
from hessdistill.students import build_student
from hessdistill.students.gemnet import GemNet, reverse_edges, triplets

TINY = dict(
    num_blocks=2,
    emb_size_atom=8,
    emb_size_edge=8,
    emb_size_trip=4,
    emb_size_rbf=4,
    emb_size_cbf=4,
    emb_size_bil_trip=8,
    num_spherical=3,
    num_radial=4,
    num_atom=1,
    cutoff=4.0,
)


def tiny(direct=True, dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    return GemNet(**{**TINY, "direct_forces": direct, **kw}).to(dtype)


def ethanol():
    a = molecule("CH3CH2OH")
    a.rattle(0.05, seed=1)
    return a


def crystal():
    a = bulk("NaCl", "rocksalt", a=5.0) * (1, 1, 2)
    a.rattle(0.05, seed=2)
    return a


def run(model, atoms_list, *, create_graph=False, dtype=torch.float64, cutoff=None):
    b = batch_atoms(atoms_list, cutoff or model.cutoff, dtype=dtype)
    b.pos.requires_grad_(True)
    e, f = model(b, create_graph=create_graph)
    return b, e, f


def random_rotation(seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def force_jacobian(f, pos):
    """dF/dx (3N, 3N), row by row (keeps the graph, so a loss on it can still be backpropagated)."""
    n = f.numel()
    rows = []
    for r in range(n):
        v = torch.zeros(n, dtype=f.dtype)
        v[r] = 1.0
        (g,) = torch.autograd.grad(f.reshape(-1), pos, v, retain_graph=True)
        rows.append(g.reshape(-1))
    return torch.stack(rows)


def test_parameter_counts_match_official():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ~300 small orthogonal inits: one thread avoids contention on a busy machine
    try:
        dt = GemNet()
        t = GemNet(direct_forces=False)
    finally:
        torch.set_num_threads(threads)
    assert sum(p.numel() for p in dt.parameters()) == 672_918
    assert sum(p.numel() for p in t.parameters()) == 565_073
    assert dt.n_params == 672_918 - 22 and t.n_params == 565_073 - 17  # fixed scale factors not trainable
    assert dt.feature_dim == 64


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("make", [ethanol, crystal])
def test_invariance_and_equivariance(direct, make):
    model = tiny(direct)
    atoms = make()
    _, e0, f0 = run(model, [atoms])
    rot = random_rotation(3)
    moved = atoms.copy()
    moved.positions = atoms.positions @ rot.T + np.array([0.3, -1.2, 2.0])
    if atoms.pbc.any():
        moved.cell = atoms.cell.array @ rot.T
    _, e1, f1 = run(model, [moved])
    assert torch.allclose(e0, e1, atol=1e-9, rtol=1e-9)
    assert torch.allclose(f0 @ torch.tensor(rot.T), f1, atol=1e-9)
    perm = np.random.default_rng(4).permutation(len(atoms))
    _, e2, f2 = run(model, [atoms[perm]])
    assert torch.allclose(e0, e2, atol=1e-9, rtol=1e-9)
    assert torch.allclose(f0[perm], f2, atol=1e-9)
    assert float(f0.detach().abs().max()) > 1e-6


def test_conservative_forces_and_hessian_rows():
    model = tiny(direct=False)
    atoms = ethanol()
    b, e, f = run(model, [atoms], create_graph=True)
    x0 = atoms.positions.copy()

    def energy_forces(x):
        a = atoms.copy()
        a.positions = x
        _, ee, ff = run(model, [a])
        return float(ee.detach()), ff.detach().numpy()

    h = 1e-5
    rng = np.random.default_rng(0)
    for _ in range(2):
        k, c = int(rng.integers(len(atoms))), int(rng.integers(3))
        xp, xm = x0.copy(), x0.copy()
        xp[k, c] += h
        xm[k, c] -= h
        (ep, fp), (em, fm) = energy_forces(xp), energy_forces(xm)
        fkc = float(f[k, c].detach())
        assert abs(-(ep - em) / (2 * h) - fkc) < 1e-6 * max(1.0, abs(fkc))
        # Hessian row by double backprop: d F / d x_kc = v^T dF/dx with v = unit vector (F is a gradient)
        v = torch.zeros_like(f)
        v[k, c] = 1.0
        (row,) = torch.autograd.grad(f, b.pos, v, create_graph=True)
        fd = (fp - fm) / (2 * h)
        assert np.abs(row.detach().numpy() - fd).max() < 1e-5 * max(1.0, np.abs(fd).max())
    # full Hessian symmetric (water: 9 rows)
    b, e, f = run(model, [molecule("H2O")], create_graph=True)
    hess = force_jacobian(f, b.pos)
    assert torch.allclose(hess, hess.T, atol=1e-10)
    # a loss on Hessian rows reaches the parameters
    v = torch.randn_like(f)
    (row,) = torch.autograd.grad(f, b.pos, v, create_graph=True)
    loss = (row**2).sum()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_direct_force_jacobian_exists_and_is_not_symmetric():
    model = tiny(direct=True)
    b, e, f = run(model, [molecule("H2O")], create_graph=True)
    jac = force_jacobian(f, b.pos)
    assert float(jac.abs().max()) > 1e-6
    assert float((jac - jac.T).abs().max()) > 1e-6 * float(jac.abs().max())
    # a Hessian-row loss backpropagates to the parameters for dT too
    (row,) = torch.autograd.grad(f, b.pos, torch.randn_like(f), create_graph=True)
    (row**2).sum().backward()
    assert model.out_blocks[-1].out_forces.linear.weight.grad is not None


@pytest.mark.parametrize("direct", [True, False])
def test_smooth_at_cutoff(direct):
    """A pair crossing the cutoff: energy and forces show no jump (nor kink) beyond smooth variation."""
    model = tiny(direct)
    rc = model.cutoff
    d = 1e-6
    es, fs = [], []
    for dx in (-3 * d, -d, d, 3 * d):
        # O-H fixed; atom C moves along x so that its distance to O crosses the cutoff (C-H stays inside)
        atoms = Atoms("OHC", positions=[[0, 0, 0], [1.0, 0, 0], [rc + dx, 0.0, 0.0]])
        _, e, f = run(model, [atoms], cutoff=rc + 1.0)
        es.append(float(e.detach()))
        fs.append(f.detach().numpy())
    es, fs = np.array(es), np.array(fs)
    de, df = np.diff(es), np.diff(fs, axis=0)
    # the middle step crosses the cutoff; a smooth function has equal steps up to O(d^2)
    assert abs(de[1] - 0.5 * (de[0] + de[2])) < 1e-12
    assert np.abs(df[1] - 0.5 * (df[0] + df[2])).max() < 1e-10
    assert abs(de[1]) > 0  # the geometry change does move the energy (the C-H pair)
    # C^2 envelope: force-Jacobian rows (Hessian rows for T) are continuous too
    rows = []
    for dx in (-3 * d, -d, d, 3 * d):
        atoms = Atoms("OHC", positions=[[0, 0, 0], [1.0, 0, 0], [rc + dx, 0.0, 0.0]])
        b, e, f = run(model, [atoms], cutoff=rc + 1.0, create_graph=True)
        v = torch.zeros_like(f)
        v[2, 0] = 1.0
        (row,) = torch.autograd.grad(f, b.pos, v)
        rows.append(row.numpy())
    dr = np.diff(np.array(rows), axis=0)
    assert np.abs(dr[1] - 0.5 * (dr[0] + dr[2])).max() < 1e-9


def test_batching_and_rebuild_and_dtype():
    # includes an isolated atom (no edges) and H2 (edges, no triplets)
    structs = [ethanol(), crystal(), molecule("H2O"), Atoms("H"), Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])]
    for direct in (True, False):
        model = tiny(direct)
        _, e, f = run(model, structs)
        e, f = e.detach(), f.detach()
        start = 0
        for k, a in enumerate(structs):
            _, ek, fk = run(model, [a])
            assert torch.allclose(e[k], ek[0], atol=1e-10)
            assert torch.allclose(f[start : start + len(a)], fk, atol=1e-10)
            start += len(a)
        clone = build_student(model.config()).double()
        clone.load_state_dict(model.state_dict())
        _, e2, f2 = run(clone, structs)
        assert torch.allclose(e, e2) and torch.allclose(f, f2)
        m32 = build_student(model.config())
        m32.load_state_dict(model.state_dict())
        m32 = m32.float()
        _, e3, f3 = run(m32, structs, dtype=torch.float32)
        assert e3.dtype == torch.float32
        assert torch.allclose(e3.double(), e, atol=1e-3 * max(1.0, float(e.abs().max())))
        assert torch.allclose(f3.double(), f, atol=1e-3 * max(1.0, float(f.abs().max())))


def test_periodic_triplets_keep_other_images_of_the_same_atom():
    a = Atoms("Ar", cell=np.eye(3) * 3.0, pbc=True)
    model = tiny(True, cutoff=4.5)
    b = batch_atoms([a], 4.5)
    i, j = b.edge_index
    n_edges = i.numel()
    assert n_edges == 18  # 6 at 3 Å + 12 at 4.24 Å (5.2 Å > cutoff)
    swap = reverse_edges(b, i, j, b.edge_shift)
    assert torch.equal(swap[swap], torch.arange(n_edges))
    assert torch.allclose(b.edge_shift[swap], -b.edge_shift)
    id_in, id_out, slot = triplets(i, 1)
    assert id_in.numel() == n_edges * (n_edges - 1)  # only the identical edge is excluded
    assert bool((id_in != id_out).all())
    _, e, f = run(model, [a])
    assert torch.isfinite(e).all() and float(f.detach().abs().max()) < 1e-9  # symmetric site: no force
    # skewed two-atom cell: vectorised triplets == brute force, reverse edges match (j, i, -shift)
    two = Atoms(
        "CO", positions=[[0, 0, 0], [0.9, 0.4, 0.2]], cell=[[2.6, 0, 0], [0.9, 2.4, 0], [0.3, 0.7, 2.8]], pbc=True
    )
    b = batch_atoms([two], 4.5)
    i, j = b.edge_index
    swap = reverse_edges(b, i, j, b.edge_shift)
    assert torch.equal(i[swap], j) and torch.equal(j[swap], i)
    assert torch.allclose(b.edge_shift[swap], -b.edge_shift)
    id_in, id_out, slot = triplets(i, 2)
    got = sorted(zip(id_in.tolist(), id_out.tolist()))
    il = i.tolist()
    want = sorted((a, c) for a in range(len(il)) for c in range(len(il)) if a != c and il[a] == il[c])
    assert got == want


def test_max_neighbors_symmetric_deterministic_and_keeps_ties():
    model = tiny(True, max_neighbors=3)
    atoms = ethanol()
    b = batch_atoms([atoms], model.cutoff)
    sel, i, j, swap, id_in, id_out, slot = model.graph(b)
    assert torch.equal(i[swap], j) and torch.equal(j[swap], i)
    assert int(torch.bincount(i).min()) >= 3
    assert sel.numel() < b.edge_index.shape[1]
    sel2, *_ = model.graph(b)
    assert torch.equal(sel, sel2)
    _, e, f = run(model, [atoms])
    assert torch.isfinite(f).all()
    # perfect rock salt, cap inside the first shell (6 neighbours): whole shell kept, order-independent
    xtal = bulk("NaCl", "rocksalt", a=5.0, cubic=True)
    b = batch_atoms([xtal], model.cutoff)
    _, i, *_ = model.graph(b)
    assert torch.equal(torch.bincount(i), torch.full((len(xtal),), 6))
    _, e0, f0 = run(model, [xtal])
    perm = np.random.default_rng(5).permutation(len(xtal))
    _, e1, f1 = run(model, [xtal[perm]])
    assert torch.allclose(e0, e1, rtol=1e-10, atol=1e-10)


def test_elements_and_embedding_init():
    model = tiny(True, num_elements=10)
    with pytest.raises(HessdistillError, match="num_elements"):
        run(model, [Atoms("Na", cell=np.eye(3) * 3.0, pbc=True)])
    table = {"numbers": [1, 6, 8], "table": np.random.default_rng(0).normal(size=(3, 5)).tolist()}
    m2 = tiny(False, embedding_init=table)
    _, e, f = run(m2, [ethanol()])
    assert torch.isfinite(e).all()
    assert build_student(m2.config()).config()["embedding_init"] == m2.config()["embedding_init"]
    with pytest.raises(HessdistillError, match="not in the teacher embedding table"):
        run(m2, [molecule("NH3")])


def test_fit_scale_factors():
    model = tiny(True)
    b = batch_atoms([ethanol(), crystal()], model.cutoff)
    values = model.fit_scale_factors(b)
    assert len(values) == 2 * 3 + 3 * 2 and all(np.isfinite(v) and v > 0 for v in values.values())
    _, e, f = run(model, [ethanol()])
    assert torch.isfinite(e).all()


def test_prepare_for_training_fits_the_scale_factors_other_students_keep_their_weights():
    b = batch_atoms([ethanol(), crystal()], 4.0)
    fitted = tiny(True)
    expected = fitted.fit_scale_factors(b)
    model = tiny(True)
    with torch.no_grad():
        model.prepare_for_training(b)
    for name, mod in model.named_modules():
        if name in expected:
            assert float(mod.scale) == expected[name]
    painn = build_student({"arch": "painn", "hidden": 8, "num_layers": 1, "num_rbf": 4, "cutoff": 4.0})
    before = {k: v.clone() for k, v in painn.state_dict().items()}
    painn.prepare_for_training(b)  # the Student default: nothing
    assert all(torch.equal(v, before[k]) for k, v in painn.state_dict().items())


# ----------------------------------------------------------------------------- precomputed graph extras
def silicon():
    a = bulk("Si", "diamond", a=5.43, cubic=True)
    a.rattle(0.05, seed=3)
    return a


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("max_neighbors", [None, 5])
def test_precomputed_graph_gives_identical_results(direct, dtype, max_neighbors):
    """Molecule + two crystals of different sizes: extras computed per structure and offset by collate give the
    same edges, reverse edges and triplets (same order) as the forward's own graph, hence identical outputs."""
    model = tiny(direct, dtype=dtype, max_neighbors=max_neighbors)
    structs = [ethanol(), crystal(), silicon()]
    assert len({len(a) for a in structs}) == 3
    prepared = collate([atoms_to_data(a, model.cutoff, dtype=dtype, student=model) for a in structs])
    plain = batch_atoms(structs, model.cutoff, dtype=dtype)
    assert model.prepared(prepared) and not model.prepared(plain)
    sel, i, j, swap, id_in, id_out, slot = model.graph(plain)
    assert torch.equal(prepared.gemnet_edge, sel) and torch.equal(prepared.gemnet_swap, swap)
    assert torch.equal(prepared.gemnet_trip_in, id_in)
    assert torch.equal(prepared.gemnet_trip_count, torch.bincount(id_out, minlength=sel.numel()))
    assert prepared.gemnet_kmax == int(slot.max()) + 1 and isinstance(prepared.gemnet_kmax, int)
    if max_neighbors is not None:
        assert sel.numel() < plain.edge_index.shape[1]  # the cap is active
    outs = []
    for b in (prepared, plain):
        b.pos.requires_grad_(True)
        e, f = model(b, create_graph=True)
        v = torch.zeros_like(f)
        v[3, 1] = 1.0
        (row,) = torch.autograd.grad(f, b.pos, v)
        outs.append((e.detach(), f.detach(), row))
    for x, y in zip(*outs):
        assert torch.equal(x, y)
    # a batch prepared for another configuration (other cutoff) is not used as prepared: same result
    other = tiny(direct, dtype=dtype, max_neighbors=max_neighbors, cutoff=3.5)
    foreign = collate([atoms_to_data(a, model.cutoff, dtype=dtype, student=other) for a in structs])
    assert not model.prepared(foreign)
    assert torch.equal(model(foreign, create_graph=True)[1].detach(), outs[1][1])


@pytest.mark.parametrize("direct", [True, False])
def test_prepared_forward_has_no_host_syncs(direct):
    model = tiny(direct, max_neighbors=5).train()
    structs = [ethanol(), crystal(), silicon(), Atoms("H"), Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])]
    prepared = collate([atoms_to_data(a, model.cutoff, student=model) for a in structs])
    assert training_step(model, prepared) == []
    calls = training_step(model, batch_atoms(structs, model.cutoff))  # unprepared: graph work in the forward
    assert {"cpu", "nonzero", "unique", "__int__", "__bool__"} <= set(calls)
    # prepared graphs survive pickling (data loader workers) and .to()
    again = pickle.loads(pickle.dumps(prepared)).to("cpu")
    assert model.prepared(again) and training_step(model, again) == []


def test_unknown_elements_fail_where_the_data_is_built():
    model = tiny(True, num_elements=10)
    na = Atoms("NaCl", positions=[[0, 0, 0], [2.8, 0, 0]])
    with pytest.raises(
        HessdistillError, match=r"(?s)GemNet: element\(s\) Na \(Z=11\), Cl \(Z=17\) .*num_elements >= 17"
    ):
        atoms_to_data(na, model.cutoff, student=model)
    table = {"numbers": [1, 6, 8], "table": np.random.default_rng(0).normal(size=(3, 5)).tolist()}
    with pytest.raises(HessdistillError, match=r"GemNet: element\(s\) N \(Z=7\) not in the teacher embedding"):
        atoms_to_data(molecule("NH3"), model.cutoff, student=tiny(False, embedding_init=table))
