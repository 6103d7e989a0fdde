"""hessian_roughness: round-off for an analytic energy, large for a cone, and CHGNet's angle cone at a perovskite."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from ase import Atoms

from hessdistill.core.errors import HessdistillError
from hessdistill.evaluation.smoothness import hessian_roughness, main

CENTRES = np.array([[0.0, 0.0, 0.0], [1.5, 0.2, -0.3], [0.4, 1.7, 0.9]])


def _atoms(offset=0.0):
    return Atoms("H3", positions=CENTRES + offset)


def smooth_hessian(atoms):
    """E = Σ_i k|u_i|² + q|u_i|⁴, u_i = x_i - c_i: an analytic energy (block diagonal Hessian)."""
    k, q = 2.0, 5.0
    h = np.zeros((3 * len(atoms),) * 2)
    for i, u in enumerate(atoms.positions - CENTRES):
        h[3 * i : 3 * i + 3, 3 * i : 3 * i + 3] = 2 * k * np.eye(3) + q * (4 * (u @ u) * np.eye(3) + 8 * np.outer(u, u))
    return h


def cone_hessian(atoms, eps=1e-3):
    """E = Σ_i sqrt(|u_i|² + eps²): a cone rounded at the scale eps, like a norm with a tiny eps."""
    h = np.zeros((3 * len(atoms),) * 2)
    for i, u in enumerate(atoms.positions - CENTRES):
        r2 = u @ u + eps**2
        h[3 * i : 3 * i + 3, 3 * i : 3 * i + 3] = (np.eye(3) - np.outer(u, u) / r2) / np.sqrt(r2)
    return h


def test_an_analytic_energy_is_smooth_and_a_cone_is_not():
    near = _atoms(offset=0.002)  # the line passes within a few mÅ of each cone's tip
    smooth = hessian_roughness(smooth_hessian, near, span=0.02, n=21, window=4)
    cone = hessian_roughness(cone_hessian, near, span=0.02, n=21, window=4)
    assert smooth["rough_max"] < 1e-10  # the entries are quadratic in t: the local fit is exact
    assert cone["rough_median"] > 1e-2 and cone["rough_max"] > 0.05
    assert smooth["step_A"] == pytest.approx(0.001) and smooth["points"] == 21
    # a different seed is a different line, and the same seed the same line
    assert hessian_roughness(cone_hessian, near, span=0.02, n=21, window=4) == cone
    assert hessian_roughness(cone_hessian, near, span=0.02, n=21, window=4, seed=1) != cone
    with pytest.raises(HessdistillError, match="window"):
        hessian_roughness(smooth_hessian, near, n=8, window=4)
    with pytest.raises(HessdistillError, match="span"):
        hessian_roughness(smooth_hessian, near, span=0.0)
    with pytest.raises(HessdistillError, match="shape"):
        hessian_roughness(lambda a: np.eye(3), near, span=0.02, n=12, window=4)


def _perovskite():
    a = 3.905
    at = Atoms(
        "SrTiO3",
        scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)],
        cell=[a, a, a],
        pbc=True,
    )
    at.rattle(0.03, seed=3)
    return at


@pytest.mark.skipif(importlib.util.find_spec("chgnet") is None, reason="needs chgnet")
def test_chgnet_hessian_is_rough_at_a_perovskite(tmp_path):
    """CHGNet's sin(nθ) angle features make its Hessian rough next to collinear O-Ti-O bonds (0.37 % of |H| left by
    a local quadratic at 1 mÅ steps; SevenNet-0 on the same line: 3e-10, not run here: 5 s per Hessian)."""
    from hessdistill.teachers import load_teacher

    t = load_teacher("chgnet", device="cpu", dtype="float64")
    r = hessian_roughness(t.hessian, _perovskite(), span=0.008, n=9, window=3)
    assert r["rough_median"] > 1e-3, r
    # the command line on a store: one JSON line per structure, the same numbers
    import contextlib
    import io

    from hessdistill.data.store import write_structures

    path = write_structures(tmp_path / "s.h5", {"test": [_perovskite()]}, require_labels=False)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(
            [
                "--teacher",
                "chgnet",
                "--structures",
                str(path),
                "--n-structures",
                "1",
                "--span",
                "0.008",
                "--points",
                "9",
                "--window",
                "3",
            ]
        )
    line = json.loads(buf.getvalue().splitlines()[0])
    assert line["formula"] == "O3SrTi" and line["rough_median"] == pytest.approx(r["rough_median"], rel=1e-6)
