"""Teachers in their own batched mode (the speed protocol times them so): a list in one model call gives the
same energies and forces as one structure at a time, on a mixed list (molecule in a box, isolated molecule,
crystals of different sizes).  MACE's batched mode is tested in tests/test_teacher_mace.py (its environment)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule

from hessdistill.teachers import load_teacher


def mixed_list():
    boxed = molecule("CH3CH2OH")
    boxed.center(vacuum=6.0)
    boxed.pbc = True  # a molecule in a periodic box
    free = molecule("H2O")  # an isolated molecule (no cell)
    si = bulk("Si", "diamond", a=5.43).repeat((2, 1, 1))
    si.rattle(0.03, seed=1)
    nacl = bulk("NaCl", "rocksalt", a=5.6)
    nacl.rattle(0.03, seed=2)
    return [boxed, si, free, nacl]


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_sevenn_batched_equals_one_at_a_time(dtype, tol):
    pytest.importorskip("sevenn")
    import torch

    torch.set_num_threads(1)
    t = load_teacher("sevenn", device="cpu", dtype=dtype)
    assert t.batched is True
    atoms = mixed_list()
    e_b, f_b = t.energy_forces_batched(atoms)
    e_1, f_1 = t.energy_forces(atoms)
    assert e_b.shape == (len(atoms),) and [f.shape for f in f_b] == [(len(a), 3) for a in atoms]
    np.testing.assert_allclose(e_b, e_1, rtol=tol, atol=tol * 10)
    for fb, f1 in zip(f_b, f_1):
        np.testing.assert_allclose(fb, f1, rtol=tol, atol=tol * 10)
    # the structures really differ (a mix-up of graphs in the batch would show)
    assert len({round(float(e), 3) for e in e_b}) == len(atoms)
    # the model is back in single-structure mode: one structure and Hessian rows are unchanged
    e0, f0 = t.energy_forces(atoms[2])
    assert e0 == pytest.approx(e_1[2], rel=tol) and np.allclose(f0, f_1[2], atol=tol * 10)
    if dtype == "float64":
        h = t.hessian_rows(atoms[2], [0, 1])
        assert h.shape == (2, 9) and np.all(np.isfinite(h))
    # order in the batch does not matter
    e_r, f_r = t.energy_forces_batched(atoms[::-1])
    np.testing.assert_allclose(e_r[::-1], e_b, rtol=tol, atol=tol * 10)
    assert t.energy_forces_batched([])[0].shape == (0,)
