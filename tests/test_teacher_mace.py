"""MACE teacher (mace-torch), tested against mace-torch's own calculator on a tiny random model.

Runs only where mace-torch is installed (the separate MACE environment); skipped elsewhere.
"""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

mace = pytest.importorskip("mace")

import torch  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import bulk, molecule  # noqa: E402

from hessdistill.core import hessian as hess  # noqa: E402
from hessdistill.core.errors import TeacherError, UnsupportedElementError  # noqa: E402
from hessdistill.teachers import load_teacher  # noqa: E402

pytestmark = pytest.mark.mace

ZS = [1, 6, 7, 8, 14]  # H C N O Si
HIDDEN = "8x0e+8x1o"
N_SCALARS = 8


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The model is tiny: one intra-op thread is as fast, and far faster when other jobs share the cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _tiny_model():
    from e3nn import o3
    from mace import modules

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(1234)
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        model = modules.ScaleShiftMACE(
            r_max=4.5,
            num_bessel=6,
            num_polynomial_cutoff=5,
            max_ell=2,
            interaction_cls=block,
            interaction_cls_first=block,
            num_interactions=2,
            num_elements=len(ZS),
            hidden_irreps=o3.Irreps(HIDDEN),
            MLP_irreps=o3.Irreps("8x0e"),
            gate=torch.nn.functional.silu,
            atomic_energies=np.array([-13.6, -1030.0, -1485.0, -2042.0, -7.9]),
            avg_num_neighbors=6.0,
            atomic_numbers=ZS,
            correlation=2,
            radial_MLP=[16, 16],
            atomic_inter_scale=3.0,
            atomic_inter_shift=0.0,
        )
    finally:
        torch.set_default_dtype(old)
    return model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("mace") / "tiny.model"
    torch.save(_tiny_model(), path)
    return path


@pytest.fixture(scope="module")
def teacher(model_path):
    return load_teacher(f"mace:{model_path}", device="cpu", dtype="float64")


@pytest.fixture(scope="module")
def calc(model_path):
    from mace.calculators import MACECalculator

    return MACECalculator(model_paths=str(model_path), device="cpu", default_dtype="float64")


def _molecule():
    a = molecule("CH3CH2OH")  # 9 atoms, H C O
    a += Atoms("N", positions=[[0.0, 0.0, 3.2]])
    a.rattle(0.05, seed=3)
    return a


def _crystal_primitive():
    a = bulk("Si", "diamond", a=5.43)  # 2 atoms; r_max > cell, so many periodic images of each atom
    a.rattle(0.04, seed=4)
    return a


def _crystal_cubic():
    a = bulk("Si", "diamond", a=5.43, cubic=True)  # 8 atoms
    a[0].symbol = "C"
    a.rattle(0.04, seed=5)
    return a


def _slab():
    from ase.build import diamond111

    a = diamond111("Si", (1, 1, 3), vacuum=5.0)  # pbc (True, True, False)
    a.rattle(0.03, seed=7)
    return a


STRUCTURES = {"molecule": _molecule, "si2": _crystal_primitive, "sic8": _crystal_cubic, "slab": _slab}


def _mace_ef(calc, atoms):
    a = atoms.copy()
    a.calc = calc
    return a.get_potential_energy(), a.get_forces()


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


# ---------------------------------------------------------------------------------------------- loading


def test_name_version_and_elements(teacher, model_path):
    assert teacher.name == "mace:tiny.model"
    assert mace.__version__ in teacher.version and "tiny.model" in teacher.version and "sha256:" in teacher.version
    assert teacher.supported_numbers == frozenset(ZS)
    assert teacher.conservative and teacher.hessian_method == "autograd"
    assert teacher.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in teacher.model.parameters())
    meta = teacher.metadata()
    assert meta["teacher"] == "mace:tiny.model" and meta["teacher_dtype"] == "float64"


def test_missing_file_and_unknown_size(tmp_path):
    with pytest.raises(TeacherError, match="no such file"):
        load_teacher(f"mace:{tmp_path / 'nope.model'}")
    with pytest.raises(TeacherError, match="unknown MACE-OFF model"):
        load_teacher("mace-off:huge", download=False)
    with pytest.raises(TeacherError, match="unknown MACE-MP model"):
        load_teacher("mace-mp:huge", download=False)
    bad = tmp_path / "weights.pt"
    torch.save({"a": torch.zeros(2)}, bad)
    with pytest.raises(TeacherError, match="does not hold a MACE model"):
        load_teacher(f"mace:{bad}")


def test_foundation_not_cached_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    t0 = time.perf_counter()
    with pytest.raises(TeacherError) as info:
        load_teacher("mace-off:large", download=False)
    assert time.perf_counter() - t0 < 5
    msg = str(info.value)
    assert "mace-off:large" in msg and str(tmp_path / "mace" / "MACE-OFF23_large.model") in msg and "mace:" in msg


@pytest.mark.parametrize(
    "name, cache_name",
    [("mace-off:small", "MACE-OFF23_small.model"), ("mace-mp:small", "20231210mace128L0_energy_epoch249model")],
)
def test_foundation_from_cache(tmp_path, monkeypatch, model_path, calc, name, cache_name):
    """A file placed where mace-torch caches foundation weights is found by mace-torch's own loaders."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "mace").mkdir()
    (tmp_path / "mace" / cache_name).write_bytes(model_path.read_bytes())
    t = load_teacher(name, device="cpu", dtype="float64", download=False)
    assert t.name == name and cache_name in t.version
    atoms = _molecule()
    e, f = t.energy_forces(atoms)
    e_ref, f_ref = _mace_ef(calc, atoms)
    assert e == pytest.approx(e_ref, abs=1e-8) and np.allclose(f, f_ref, atol=1e-10)


def _dns_resolves(host: str, timeout: float = 3.0) -> bool | None:
    """True/False when name resolution answers within ``timeout``, None when it hangs."""
    result = {}

    def probe():
        try:
            socket.getaddrinfo(host, 443)
            result["ok"] = True
        except OSError:
            result["ok"] = False

    th = threading.Thread(target=probe, daemon=True)
    th.start()
    th.join(timeout)
    return result.get("ok")


def test_foundation_offline_download_fails_fast(tmp_path, monkeypatch):
    """With downloads on but no network, mace-torch's own download fails and we turn it into a TeacherError."""
    ok = _dns_resolves("raw.githubusercontent.com")
    if ok is None:
        pytest.skip("name resolution hangs here; mace-torch would wait for its socket timeout")
    if ok:
        pytest.skip("network available: would download the real MACE-OFF23 large weights")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("HESSDISTILL_OFFLINE", raising=False)
    for name, fname in (
        ("mace-off:large", "MACE-OFF23_large.model"),
        ("mace-mp:small", "20231210mace128L0_energy_epoch249model"),
    ):
        t0 = time.perf_counter()
        with pytest.raises(TeacherError) as info:
            load_teacher(name)
        assert time.perf_counter() - t0 < 30
        assert name in str(info.value) and str(tmp_path / "mace" / fname) in str(info.value)


# ---------------------------------------------------------------------------------------------- energies, forces


@pytest.mark.parametrize("key", list(STRUCTURES))
def test_energy_forces_match_mace_calculator(teacher, calc, key):
    atoms = STRUCTURES[key]()
    e, f = teacher.energy_forces(atoms)
    e_ref, f_ref = _mace_ef(calc, atoms)
    assert isinstance(e, float) and f.shape == (len(atoms), 3) and f.dtype == np.float64
    assert abs(e - e_ref) < 1e-8 * max(1.0, abs(e_ref))
    np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-10)
    assert np.abs(f).max() > 1e-3  # the test is not vacuous


def test_energy_forces_list(teacher):
    structs = [_molecule(), _crystal_primitive()]
    e, f = teacher.energy_forces(structs)
    assert e.shape == (2,) and [x.shape for x in f] == [(10, 3), (2, 3)]


def test_isolated_atom(teacher, calc):
    atoms = Atoms("O", positions=[[0.0, 0.0, 0.0]])
    e, f = teacher.energy_forces(atoms)
    # no edges within r_max: E0 plus the readout of the atom's own (self-connection) features, zero forces
    assert e == pytest.approx(_mace_ef(calc, atoms)[0], abs=1e-10) and np.all(f == 0)
    h = teacher.hessian(atoms)
    assert h.shape == (3, 3) and np.all(h == 0)


# ---------------------------------------------------------------------------------------------- Hessians


@pytest.mark.parametrize("key", ["molecule", "si2", "sic8", "slab"])
def test_hessian_rows_match_finite_differences(teacher, key):
    atoms = STRUCTURES[key]()
    n3 = 3 * len(atoms)
    rows = np.unique(np.array([0, 4, n3 // 2, n3 - 1]))
    h = teacher.hessian_rows(atoms, rows)
    assert h.shape == (len(rows), n3)

    def force_fn(pos):
        a = atoms.copy()
        a.positions = pos
        return teacher.energy_forces(a)[1]

    fd = hess.finite_difference_columns(force_fn, atoms.get_positions(), rows, step=1e-3, order=2)
    assert _rel(h, fd) < 1e-4


@pytest.mark.parametrize("key", ["molecule", "si2"])
def test_full_hessian_symmetry_translation_and_mace_hessian(teacher, calc, key):
    atoms = STRUCTURES[key]()
    n3 = 3 * len(atoms)
    h = teacher.hessian(atoms)
    assert h.shape == (n3, n3)
    assert hess.symmetry_error(h) < 1e-10
    assert np.abs(hess.translation_sum(h)).max() < 1e-9 * np.abs(h).max()
    # mace's own Hessian: shape (3N, N, 3), rows of d2E/dx2 (positive sign, = -dF/dx)
    h_mace = np.asarray(calc.get_hessian(atoms))
    assert h_mace.shape == (n3, len(atoms), 3)
    np.testing.assert_allclose(h, h_mace.reshape(n3, n3), rtol=0, atol=1e-10 * np.abs(h).max())


def test_labels_share_one_forward(teacher):
    atoms = _molecule()
    e, f, h = teacher.labels(atoms, rows=[1, 2])
    e2, f2 = teacher.energy_forces(atoms)
    assert e == pytest.approx(e2, abs=1e-10) and np.allclose(f, f2, atol=1e-12)
    np.testing.assert_allclose(h, teacher.hessian_rows(atoms, [1, 2]), atol=1e-12)


def test_float32(model_path, teacher):
    t32 = load_teacher(f"mace:{model_path}", device="cpu", dtype="float32")
    assert all(p.dtype == torch.float32 for p in t32.model.parameters())
    atoms = _crystal_cubic()
    e32, f32 = t32.energy_forces(atoms)
    e64, f64 = teacher.energy_forces(atoms)
    assert abs(e32 - e64) < 1e-6 * abs(e64) + 1e-4
    assert _rel(f32, f64) < 1e-3
    rows = [0, 7, 20]
    assert _rel(t32.hessian_rows(atoms, rows), teacher.hessian_rows(atoms, rows)) < 1e-3


# ---------------------------------------------------------------------------------------------- errors, features


def test_unsupported_element(teacher):
    atoms = _molecule()
    atoms[0].symbol = "Fe"
    with pytest.raises(UnsupportedElementError, match="Fe"):
        teacher.energy_forces(atoms)
    with pytest.raises(UnsupportedElementError):
        teacher.hessian_rows(atoms, [0])
    with pytest.raises(UnsupportedElementError):
        teacher.node_features(atoms)


@pytest.mark.parametrize("key", ["molecule", "sic8"])
def test_node_features_match_mace_descriptors(teacher, calc, key):
    atoms = STRUCTURES[key]()
    x = teacher.node_features(atoms)
    assert x.shape == (len(atoms), N_SCALARS) and x.dtype == np.float64
    desc = calc.get_descriptors(atoms, invariants_only=True)  # (N, scalars of layer 1 + scalars of layer 2)
    assert desc.shape == (len(atoms), 2 * N_SCALARS)
    np.testing.assert_allclose(x, desc[:, -N_SCALARS:], rtol=0, atol=1e-12)


def test_element_embeddings(teacher):
    numbers, table = teacher.element_embeddings()
    assert numbers.tolist() == ZS and table.shape == (len(ZS), N_SCALARS) and table.dtype == np.float64
    # an isolated atom's first node features are exactly its row of the table
    onehot = torch.zeros(1, len(ZS), dtype=torch.float64)
    onehot[0, ZS.index(8)] = 1.0
    with torch.no_grad():
        row = teacher.model.node_embedding(onehot).numpy()[0]
    np.testing.assert_allclose(table[ZS.index(8)], row, atol=1e-14)
    assert np.abs(table).max() > 0 and len({tuple(r) for r in np.round(table, 12)}) == len(ZS)


# ---------------------------------------------------------------------------------------------- batched mode
def test_batched_equals_one_at_a_time(teacher):
    """The speed protocol times the teacher in its batched mode: a mixed list (molecule in a box, isolated
    molecule, crystals and a slab of different sizes) in one MACE call equals one structure at a time."""
    assert teacher.batched is True
    boxed = _molecule()
    boxed.center(vacuum=5.0)
    boxed.pbc = True
    atoms = [boxed, _crystal_primitive(), _molecule(), _crystal_cubic(), _slab()]
    e_b, f_b = teacher.energy_forces_batched(atoms)
    e_1, f_1 = teacher.energy_forces(atoms)
    assert e_b.shape == (len(atoms),) and [f.shape for f in f_b] == [(len(a), 3) for a in atoms]
    np.testing.assert_allclose(e_b, e_1, rtol=1e-10, atol=1e-9)
    for fb, f1 in zip(f_b, f_1):
        np.testing.assert_allclose(fb, f1, rtol=1e-9, atol=1e-9)
    # a molecule in a box larger than r_max is the free molecule; every other structure differs
    assert e_b[0] == pytest.approx(e_b[2], abs=1e-9)
    assert len({round(float(e), 6) for e in e_b}) == len(atoms) - 1
    e_r, _ = teacher.energy_forces_batched(atoms[::-1])
    np.testing.assert_allclose(e_r[::-1], e_b, rtol=1e-10, atol=1e-9)
