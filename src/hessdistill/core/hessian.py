"""Energy Hessians (or chosen rows of them) from force fields.

Conventions (as everywhere in hessdistill): positions in Å, energies in eV, forces in eV/Å and the
Hessian is H = d²E/dx² in eV/Å² (not the force Jacobian -H).  Coordinates are flattened atom-major:
index ``3*i + c`` is atom ``i``, Cartesian component ``c``.

For a differentiable model the row ``r`` of the *force Jacobian* J = dF/dx is one vector-Jacobian product
(VJP) of the flattened forces with the unit cotangent e_r, so ``H[r, :] = -VJP(e_r)``.  For a conservative
model (F = -dE/dx) H is symmetric; for a direct-force model the same VJP gives the rows of -dF/dx, which are
*not* symmetric, and that is what we store for such teachers (documented in the store's attributes).

Three routes to VJP rows are provided, and :func:`hessian_rows` picks between them:

``loop``
    one ``torch.autograd.grad`` call per row, reusing the graph (``retain_graph=True``).  Lowest memory,
    and on CPU as fast as anything else (measured in ``bench/hessian_throughput.py``).
``batched``
    ``torch.autograd.grad(..., is_grads_batched=True)`` over chunks of rows (vmap under the hood).  On a
    GPU this amortises kernel launches; memory grows with the chunk size (about chunk x one backward), so
    rows are processed in chunks.  Some models use custom autograd functions that vmap cannot batch; the
    route then falls back to ``loop`` with a warning.
``auto``
    measures both routes on the first structure of each (model key, device, size class) — size classes are
    atom counts rounded up to a power of two — after a warm-up call of each, and uses the faster one for
    that class from then on.  Measured on CPU (``bench/hessian_throughput.py``): batching wins for CHGNet
    and for SevenNet on small molecules, and loses 2-5x for SevenNet crystals of 16-64 atoms, so no fixed
    choice is right.

Finite differences (:func:`finite_difference_columns`) give *columns* of H from force evaluations
(central, 2 force calls per column, or 4th order, 4 calls).  Columns equal rows for conservative
models; for non-conservative models ask for the full Jacobian.  Accuracy: the 2nd-order stencil's
truncation error is (h²/6)·∂³F/∂x³ and the rounding error about ε·|F|/h (ε the float epsilon), so with
float64 forces and h = 1e-3 Å both are ~1e-7 relative for smooth potentials; in float32 (ε≈1e-7) choose
h ≈ 1e-2 Å, which gives ~1e-4 relative.  Cutoff functions that are only C¹ or C² limit FD accuracy
whatever h is.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

VJP_METHODS = ("loop", "batched", "auto")

# (key, device type, size class) -> chosen method, filled by method="auto".
_AUTO_CHOICE: dict[tuple[str, str, int], str] = {}


def _size_class(n_coords: int) -> int:
    n_atoms = max(1, n_coords // 3)
    return 1 << (n_atoms - 1).bit_length()


def as_row_indices(rows, n_coords: int) -> np.ndarray:
    """Validate a row selection against 3N coordinates and return it as an int64 array."""
    idx = np.asarray(rows, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n_coords):
        raise ValueError(
            f"row indices must lie in [0, {n_coords}) for a structure of {n_coords // 3} atoms; got {idx.min()}..{idx.max()}"
        )
    return idx


def sample_rows(n_atoms: int, k: int | None, seed: int, structure_key: int) -> np.ndarray:
    """A fixed, reproducible random subset of ``k`` of the 3N Hessian rows of one structure.

    The draw depends only on (seed, structure_key), not on processing order, chunking or resumption, so
    a resumed labelling job picks the same rows.  Rows are returned sorted.  ``k=None`` or ``k >= 3N``
    gives all rows.
    """
    n = 3 * int(n_atoms)
    if k is None or k >= n:
        return np.arange(n, dtype=np.int64)
    if k <= 0:
        raise ValueError(f"the number of Hessian rows per structure must be positive, got {k}")
    rng = np.random.default_rng([int(seed), int(structure_key)])
    return np.sort(rng.choice(n, size=int(k), replace=False)).astype(np.int64)


def _vjp_rows_loop(forces_flat: torch.Tensor, positions: torch.Tensor, rows: np.ndarray, create_graph: bool):
    out = []
    for r in rows:
        # the graph is kept (retain_graph) so that callers may ask for more rows of the same structure
        (g,) = torch.autograd.grad(
            forces_flat[int(r)],
            positions,
            retain_graph=True,
            create_graph=create_graph,
            allow_unused=True,
        )
        if g is None:
            g = torch.zeros_like(positions)
        out.append(g.reshape(-1))
    return torch.stack(out) if out else forces_flat.new_zeros((0, forces_flat.numel()))


def _vjp_rows_batched(forces_flat, positions, rows: np.ndarray, create_graph: bool, chunk_size: int):
    n_coords = forces_flat.numel()
    out = []
    eye_rows = torch.as_tensor(rows, device=forces_flat.device)
    for start in range(0, len(rows), chunk_size):
        sel = eye_rows[start : start + chunk_size]
        cot = torch.zeros((len(sel), n_coords), dtype=forces_flat.dtype, device=forces_flat.device)
        cot[torch.arange(len(sel), device=cot.device), sel] = 1.0
        (g,) = torch.autograd.grad(
            forces_flat,
            positions,
            grad_outputs=cot,
            retain_graph=True,
            create_graph=create_graph,
            is_grads_batched=True,
            allow_unused=True,
        )
        if g is None:
            g = torch.zeros((len(sel),) + tuple(positions.shape), dtype=positions.dtype, device=positions.device)
        out.append(g.reshape(len(sel), -1))
    return torch.cat(out) if out else forces_flat.new_zeros((0, n_coords))


def force_jacobian_rows(
    forces: torch.Tensor,
    positions: torch.Tensor,
    rows,
    *,
    method: str = "loop",
    chunk_size: int = 64,
    create_graph: bool = False,
    key: str = "model",
) -> torch.Tensor:
    """Rows of the force Jacobian dF/dx, shape (len(rows), 3N), by VJPs through the autograd graph.

    ``forces`` (N,3) must have been computed from the leaf ``positions`` (N,3) with a graph that can be
    differentiated again (``create_graph=True`` when the forces came from autograd).  Returns dF/dx rows;
    :func:`hessian_rows` negates them into Hessian rows.
    """
    if method not in VJP_METHODS:
        raise ValueError(f"unknown VJP method {method!r}; choose one of {VJP_METHODS}")
    if not forces.requires_grad:
        raise RuntimeError(
            "the forces do not depend on the positions through the autograd graph; compute them with "
            "create_graph=True from a positions tensor that requires grad"
        )
    n_coords = positions.numel()
    rows = as_row_indices(rows, n_coords)
    forces_flat = forces.reshape(-1)
    if method == "auto":
        method = _auto_method(forces_flat, positions, rows, chunk_size, create_graph, key)
    if method == "batched":
        try:
            return _vjp_rows_batched(forces_flat, positions, rows, create_graph, chunk_size)
        except RuntimeError as exc:  # vmap cannot batch some custom autograd functions / scatter kernels
            warnings.warn(
                f"batched VJP failed for {key!r} ({exc.__class__.__name__}: {str(exc)[:200]}); using a loop",
                RuntimeWarning,
                stacklevel=2,
            )
            _AUTO_CHOICE[(key, positions.device.type, _size_class(n_coords))] = "loop"
    return _vjp_rows_loop(forces_flat, positions, rows, create_graph)


def _auto_method(forces_flat, positions, rows, chunk_size, create_graph, key) -> str:
    cache_key = (key, positions.device.type, _size_class(forces_flat.numel()))
    if cache_key in _AUTO_CHOICE:
        return _AUTO_CHOICE[cache_key]
    probe = rows[: max(1, min(len(rows), chunk_size))]
    timings = {}
    for m in ("loop", "batched"):
        try:
            for _ in range(2):  # the first call of each route pays for warm-up (kernels, allocator); time the second
                _sync(positions.device)
                t0 = time.perf_counter()
                if m == "loop":
                    _vjp_rows_loop(forces_flat, positions, probe, create_graph)
                else:
                    _vjp_rows_batched(forces_flat, positions, probe, create_graph, chunk_size)
                _sync(positions.device)
            timings[m] = time.perf_counter() - t0
        except RuntimeError:
            timings[m] = float("inf")
    choice = min(timings, key=timings.get)
    log.info(
        "VJP route for %s on %s, size class %d atoms: %s (probe of %d rows: %s)",
        key,
        positions.device.type,
        cache_key[2],
        choice,
        len(probe),
        timings,
    )
    _AUTO_CHOICE[cache_key] = choice
    return choice


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hessian_rows(forces, positions, rows, **kwargs) -> torch.Tensor:
    """Hessian rows H[rows, :] = -dF[rows]/dx (eV/Å²), shape (len(rows), 3N). See :func:`force_jacobian_rows`."""
    return -force_jacobian_rows(forces, positions, rows, **kwargs)


def full_hessian(forces, positions, **kwargs) -> torch.Tensor:
    """The full (3N, 3N) Hessian by 3N VJPs."""
    return hessian_rows(forces, positions, np.arange(positions.numel()), **kwargs)


def finite_difference_columns(
    force_fn: Callable[[np.ndarray], np.ndarray],
    positions: np.ndarray,
    columns: Sequence[int],
    *,
    step: float = 1e-3,
    order: int = 2,
) -> np.ndarray:
    """Columns H[:, c] = -dF/dx_c by finite differences of forces; returns shape (len(columns), 3N).

    ``force_fn(positions (N,3)) -> forces (N,3)`` in eV/Å.  ``order=2``: central differences, 2 force calls
    per column, error O(h²); ``order=4``: 5-point stencil, 4 calls per column, error O(h⁴).  For a
    conservative model the result equals the Hessian rows with the same indices.
    """
    if step <= 0:
        raise ValueError(f"finite-difference step must be positive, got {step}")
    if order == 2:
        stencil = ((1.0, 1.0), (-1.0, -1.0))  # (displacement in units of h, weight), divided by 2h
        denom = 2.0
    elif order == 4:
        stencil = ((2.0, -1.0), (1.0, 8.0), (-1.0, -8.0), (-2.0, 1.0))
        denom = 12.0
    else:
        raise ValueError(f"finite-difference order must be 2 or 4, got {order}")
    pos0 = np.array(positions, dtype=np.float64)
    n_coords = pos0.size
    cols = as_row_indices(columns, n_coords)
    out = np.empty((len(cols), n_coords), dtype=np.float64)
    for j, c in enumerate(cols):
        acc = np.zeros(n_coords)
        for disp, weight in stencil:
            p = pos0.copy().reshape(-1)
            p[c] += disp * step
            acc += weight * np.asarray(force_fn(p.reshape(pos0.shape)), dtype=np.float64).reshape(-1)
        out[j] = -acc / (denom * step)
    return out


def symmetry_error(h: np.ndarray) -> float:
    """max |H - Hᵀ| / max |H|: 0 for a conservative model up to round-off."""
    h = np.asarray(h)
    scale = float(np.abs(h).max()) or 1.0
    return float(np.abs(h - h.T).max() / scale)


def translation_sum(h_rows: np.ndarray) -> np.ndarray:
    """Σ over atoms of each row's per-component blocks, shape (R, 3).

    Translating all atoms together leaves the energy unchanged, so Σ_j H[r, 3j+c] = 0 for every row r and
    component c (exactly for molecules and for periodic crystals alike).
    """
    h_rows = np.asarray(h_rows)
    return h_rows.reshape(h_rows.shape[0], -1, 3).sum(axis=1)
