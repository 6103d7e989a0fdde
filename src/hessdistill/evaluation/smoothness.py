"""Is a model's Hessian a smooth function of the positions?  A check to run on a teacher before distilling it.

A student is a smooth function of the positions (SiLU networks, C² cutoff envelopes); it can only learn the part
of the teacher's Hessian that is smooth too.  Some foundation models are not smooth at second order.  CHGNet, for
one, expands bond angles in sin(nθ), cos(nθ) with θ = acos(0.999999 cos θ): at collinear bond pairs (every
O-Ti-O and O-Sr-O of a perovskite) sin(nθ) is linear in the transverse displacement, the energy has a cone
there, and its Hessian changes by per cents per mÅ of displacement nearby.  Forces and finite differences are
consistent with such a Hessian (it is a property of the potential energy surface, not a numerical error), yet no
smooth student can follow it: the Hessian error of every student plateaus at the size of that rough part.

:func:`hessian_roughness` walks a straight line x(t) = x0 + t d through a structure (d a random unit direction
over all 3N coordinates, seeded), computes the Hessian at ``n`` equally spaced points, and reports what a
quadratic in t fitted over a sliding window of ``2 * window + 1`` points does not explain, relative to the mean
Hessian norm along the line.  A model with an analytic energy gives round-off (1e-7 for SevenNet-0 in float64 at
steps of 5 mÅ); CHGNet on a 5-atom SrTiO3 frame gives 7 % (median) and up to 37 %.

Command line (prints one JSON line per structure)::

    python -m hessdistill.evaluation.smoothness --teacher chgnet --structures results/S/data/structures.h5 \\
        [--split test] [--n-structures 3] [--span 0.2] [--points 41]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np

from ..core.errors import HessdistillError


def hessian_roughness(
    hessian_fn: Callable, atoms, *, span: float = 0.2, n: int = 41, window: int = 5, seed: int = 0
) -> dict:
    """Roughness of ``hessian_fn(atoms) -> (3N, 3N)`` along a line through ``atoms`` (see the module docstring).

    ``span`` (Å) is the length of the line (t from -span/2 to span/2), ``n`` the number of Hessians computed.
    Returned: ``rough_median`` / ``rough_max`` (local-quadratic residual / mean |H|_F over the interior points),
    ``step_change_median`` (|H(t + h) - H(t)|_F / mean |H|_F), ``line_change`` (|H(end) - H(start)|_F / mean
    |H|_F, the smooth variation for scale), and the step h.
    """
    if n < 2 * window + 2 or window < 2:
        raise HessdistillError(
            f"hessian_roughness: need window >= 2 and n >= 2 * window + 2 points (got n={n}, window={window})"
        )
    if not span > 0:
        raise HessdistillError(f"hessian_roughness: span must be > 0 Å, got {span}")
    x0 = np.asarray(atoms.positions, dtype=np.float64)
    direction = np.random.default_rng(seed).normal(size=x0.shape)
    direction /= np.linalg.norm(direction)
    ts = np.linspace(-span / 2, span / 2, n)
    hessians = []
    for t in ts:
        moved = atoms.copy()
        moved.positions = x0 + t * direction
        h = np.asarray(hessian_fn(moved), dtype=np.float64)
        if h.shape != (x0.size, x0.size):
            raise HessdistillError(f"hessian_roughness: the Hessian has shape {h.shape}, expected {(x0.size,) * 2}")
        hessians.append(h.reshape(-1))
    hs = np.array(hessians)
    scale = float(np.mean(np.linalg.norm(hs, axis=1)))
    if scale == 0.0:
        raise HessdistillError("hessian_roughness: the Hessian is zero along the whole line")
    residuals = []
    for k in range(window, n - window):
        dt = ts[k - window : k + window + 1] - ts[k]
        coef, *_ = np.linalg.lstsq(np.vander(dt, 3), hs[k - window : k + window + 1], rcond=None)
        residuals.append(np.linalg.norm(hs[k] - coef[-1]) / scale)  # coef[-1]: the fit's value at dt = 0
    residuals = np.array(residuals)
    steps = np.linalg.norm(np.diff(hs, axis=0), axis=1) / scale
    return {
        "n_atoms": len(atoms),
        "step_A": float(ts[1] - ts[0]),
        "points": int(n),
        "window": int(window),
        "hessian_norm": scale,
        "rough_median": float(np.median(residuals)),
        "rough_max": float(residuals.max()),
        "step_change_median": float(np.median(steps)),
        "line_change": float(np.linalg.norm(hs[-1] - hs[0]) / scale),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hessdistill.evaluation.smoothness", description=__doc__.split("\n")[0])
    p.add_argument("--teacher", required=True, help="teacher name (chgnet, sevenn, mace-off, ...)")
    p.add_argument("--structures", required=True, help="a structure store (results/<subset>/data/structures.h5)")
    p.add_argument("--split", default="test")
    p.add_argument("--n-structures", type=int, default=3)
    p.add_argument("--span", type=float, default=0.2, help="length of the line in Å")
    p.add_argument("--points", type=int, default=41)
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--dtype", default="float64")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    from ..data.store import StructureStore
    from ..teachers import load_teacher

    with StructureStore(args.structures) as store:
        atoms_list = [store.atoms(args.split, k) for k in range(min(args.n_structures, store.n_structures(args.split)))]
    teacher = load_teacher(args.teacher, device=args.device, dtype=args.dtype)
    for k, atoms in enumerate(atoms_list):
        res = hessian_roughness(teacher.hessian, atoms, span=args.span, n=args.points, window=args.window, seed=k)
        print(
            json.dumps(
                {
                    "teacher": args.teacher,
                    "split": args.split,
                    "index": k,
                    "formula": atoms.get_chemical_formula(),
                    **res,
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
