"""Teacher label and Hessian stores (HDF5) and their readers.

Labels file (``format = "hessdistill.labels"``), one group per split, aligned with the structure store
(same structure order, same ``offsets``):

- ``energy`` (M,) eV, ``forces`` (ΣN, 3) eV/Å, ``n_atoms`` (M,), ``offsets`` (M+1,)
- ``wall_time`` (M,) seconds the teacher spent on each structure (labels and, where computed together, Hessian rows)
- group attribute ``structure_content_hash``: the content hash of the structure split these labels belong to
- optional ``node_features`` (ΣN, F) float32: the teacher's last-layer invariant node features, row-aligned with
  ``forces`` (structure m is ``node_features[offsets[m]:offsets[m+1]]``); present in every labelled split when
  the labelling job ran with ``node_features`` on.  File attributes ``node_feature_dim`` (F) and
  ``node_features`` (which tensor of the teacher they are) describe them.

With node features on, the labels file also holds two file-level datasets (next to the split groups): the
teacher's per-element embedding table ``element_embeddings`` (E, F_emb) float32 and its atomic numbers
``element_numbers`` (E,) int64, described by the file attributes ``element_embedding_dim`` and
``element_embeddings``.

Hessians file (``format = "hessdistill.hessians"``), one group per split:

- ``row_index`` (ΣR,) int32: for structure m, ``row_index[row_offsets[m]:row_offsets[m+1]]`` are the indices
  (``3*atom + component``) of the stored rows of its Hessian
- ``row_offsets`` (M+1,) int64
- ``values`` (Σ R_m·3N_m,) the stored rows, flattened row-major; structure m's block is
  ``values[value_offsets[m]:value_offsets[m+1]].reshape(R_m, 3 N_m)``
- ``value_offsets`` (M+1,) int64, ``n_atoms`` (M,)

The stored quantity is the Hessian H = d²E/dx² in eV/Å² (NOT the force Jacobian dF/dx = -H).  For
direct-force teachers (file attribute ``conservative = False``) the rows are rows of -dF/dx and H is not
symmetric.  File attributes record the teacher, its version and dtype, the storage dtype, how rows were
chosen (``rows_per_structure``: "full" or k, ``row_seed``) and units.  Files merged from sharded labelling jobs
(``teachers.<name>.shards`` > 1, :mod:`hessdistill.jobs.label_shards`) also carry ``label_shards`` (the number of
shards); their datasets are those of the single job.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from ..core.errors import StoreError

LABELS_FORMAT = "hessdistill.labels"
HESSIANS_FORMAT = "hessdistill.hessians"
HESSIAN_QUANTITY = "H = d2E/dx2 (eV/Angstrom^2), not the force Jacobian dF/dx = -H"


def _open(path, fmt):
    path = Path(path)
    if not path.exists():
        raise StoreError("file does not exist", path=path, fix="run the labelling job that produces it first")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(
            f"not a readable HDF5 file ({exc})",
            path=path,
            fix="the file is truncated or corrupt: delete it and rerun the job that writes it",
        ) from None
    if f.attrs.get("format") != fmt:
        got = f.attrs.get("format")
        f.close()
        raise StoreError(
            f"expected an HDF5 file with format {fmt!r}, found {got!r}",
            path=path,
            fix="pass the right file (labels vs hessians vs structures)",
        )
    return f


class _Reader:
    fmt = ""

    def __init__(self, path):
        self.path = Path(path)
        self._f = _open(self.path, self.fmt)
        self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self._f.attrs.items()}

    @property
    def splits(self) -> list[str]:
        # only groups are splits (a labels file may also hold file-level datasets, e.g. element_embeddings)
        return sorted(k for k in self._f.keys() if isinstance(self._f.get(k, getlink=False), h5py.Group))

    def _group(self, split):
        if split not in self._f:
            raise StoreError(
                f"has no split {split!r} (splits: {', '.join(self.splits) or 'none'})",
                path=self.path,
                fix="label this split, or ask for one of the splits present",
            )
        return self._f[split]

    def n_structures(self, split) -> int:
        return int(self._group(split)["n_atoms"].shape[0])

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LabelStore(_Reader):
    """Reader of a teacher labels file."""

    fmt = LABELS_FORMAT

    def arrays(self, split) -> dict[str, np.ndarray]:
        g = self._group(split)
        return {k: g[k][()] for k in g.keys()}

    def energy_forces(self, split, i) -> tuple[float, np.ndarray]:
        g = self._group(split)
        off = g["offsets"]
        return float(g["energy"][i]), g["forces"][off[i] : off[i + 1]]

    @property
    def has_node_features(self) -> bool:
        return bool(self.splits) and all("node_features" in self._f[s] for s in self.splits)

    @property
    def node_feature_dim(self) -> int | None:
        dim = self.attrs.get("node_feature_dim")
        return None if dim is None else int(dim)

    def node_features(self, split, i=None) -> np.ndarray:
        """Teacher node features of structure ``i`` of ``split``, (N_i, F) float32; all of them (ΣN, F) if ``i`` is None."""
        g = self._group(split)
        if "node_features" not in g:
            raise StoreError(
                f"split {split!r} has no teacher node features",
                path=self.path,
                fix="relabel with node features on (python -m hessdistill.jobs.label ... --node-features)",
            )
        if i is None:
            return g["node_features"][()]
        off = g["offsets"]
        return g["node_features"][off[i] : off[i + 1]]

    def element_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """The teacher's per-element embedding table: ``(numbers (E,) int64, table (E, F) float32)``."""
        if "element_embeddings" not in self._f or "element_numbers" not in self._f:
            raise StoreError(
                "holds no teacher element embedding table",
                path=self.path,
                fix="relabel with node features on (python -m hessdistill.jobs.label ... --node-features)",
            )
        return self._f["element_numbers"][()].astype(np.int64), self._f["element_embeddings"][()]


class HessianStore(_Reader):
    """Reader of a teacher Hessian file: rows of H = d²E/dx² per structure."""

    fmt = HESSIANS_FORMAT

    def rows(self, split, i) -> tuple[np.ndarray, np.ndarray]:
        """(row indices (R,), rows (R, 3N)) of structure ``i`` of ``split``."""
        g = self._group(split)
        ro, vo, n = g["row_offsets"], g["value_offsets"], int(g["n_atoms"][i])
        idx = g["row_index"][ro[i] : ro[i + 1]].astype(np.int64)
        vals = g["values"][vo[i] : vo[i + 1]].reshape(len(idx), 3 * n)
        return idx, vals

    def full(self, split, i) -> np.ndarray:
        """The full (3N, 3N) Hessian of structure ``i``; an error when only some rows were stored."""
        idx, vals = self.rows(split, i)
        n3 = vals.shape[1]
        if len(idx) != n3:
            raise StoreError(
                f"structure {i} of split {split!r} has {len(idx)} of {n3} Hessian rows stored",
                path=self.path,
                fix="relabel with rows_per_structure: full to get full Hessians",
            )
        out = np.empty((n3, n3), dtype=vals.dtype)
        out[idx] = vals
        return out


def write_labels(path, per_split: dict, attrs: dict, element_embeddings=None) -> None:
    """Write a labels file. ``per_split[split]`` holds energy, forces, n_atoms, wall_time, structure_content_hash
    and optionally ``node_features`` (ΣN, F); ``element_embeddings`` is ``(numbers (E,), table (E, F))`` or None."""
    from ..core.atomic import atomic_path

    with_feats = [s for s, d in per_split.items() if d.get("node_features") is not None]
    if with_feats and len(with_feats) != len(per_split):
        raise StoreError(f"node features given for splits {with_feats} but not for all of {list(per_split)}", path=path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            _file_attrs(f, LABELS_FORMAT, attrs)
            if element_embeddings is not None:
                numbers, table = element_embeddings
                numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
                table = np.asarray(table, dtype=np.float32)
                if table.ndim != 2 or table.shape[0] != len(numbers):
                    raise StoreError(
                        f"element embedding table of shape {table.shape} does not match {len(numbers)} elements",
                        path=path,
                    )
                f.create_dataset("element_numbers", data=numbers)
                f.create_dataset("element_embeddings", data=table)
                f.attrs["element_embedding_dim"] = int(table.shape[1])
            for split, d in per_split.items():
                g = f.create_group(split, track_order=True)
                n_atoms = np.asarray(d["n_atoms"], dtype=np.int64)
                g.create_dataset("energy", data=np.asarray(d["energy"], dtype=np.float64))
                g.create_dataset("forces", data=np.asarray(d["forces"], dtype=np.float64).reshape(-1, 3))
                g.create_dataset("n_atoms", data=n_atoms)
                g.create_dataset("offsets", data=np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64))
                g.create_dataset("wall_time", data=np.asarray(d["wall_time"], dtype=np.float64))
                if d.get("node_features") is not None:
                    feats = np.asarray(d["node_features"], dtype=np.float32)
                    if feats.ndim != 2 or feats.shape[0] != int(n_atoms.sum()):
                        raise StoreError(
                            f"split {split!r}: node features of shape {feats.shape} do not match "
                            f"{int(n_atoms.sum())} atoms",
                            path=path,
                        )
                    g.create_dataset("node_features", data=feats)
                g.attrs["structure_content_hash"] = d["structure_content_hash"]
                g.attrs["n_structures"] = len(n_atoms)


def write_hessians(path, per_split: dict, attrs: dict, dtype) -> None:
    """Write a Hessians file. ``per_split[split]`` holds n_atoms, row_index (list of arrays), rows (list of (R,3N)
    arrays, or of callables returning one: read one structure at a time, so that full Hessians of thousands of
    large structures (MD22's nanotube: 10 MB each) never sit in memory together)."""
    from ..core.atomic import atomic_path

    dtype = np.dtype(dtype)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            _file_attrs(
                f,
                HESSIANS_FORMAT,
                {**attrs, "quantity": HESSIAN_QUANTITY, "hessian_unit": "eV/Angstrom^2", "storage_dtype": dtype.name},
            )
            for split, d in per_split.items():
                g = f.create_group(split, track_order=True)
                n_atoms = np.asarray(d["n_atoms"], dtype=np.int64)
                counts = np.array([len(r) for r in d["row_index"]], dtype=np.int64)
                sizes = counts * 3 * n_atoms
                g.create_dataset("n_atoms", data=n_atoms)
                g.create_dataset("row_offsets", data=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
                g.create_dataset("value_offsets", data=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
                idx = np.concatenate(d["row_index"]) if len(counts) else np.zeros(0)
                g.create_dataset("row_index", data=idx.astype(np.int32))
                total = int(sizes.sum())
                # chunked so one structure's block can be read without touching the rest; written block by block
                ds = g.create_dataset(
                    "values", shape=(total,), dtype=dtype, chunks=(min(max(total, 1), 1 << 16),) if total else None
                )
                start = 0
                for r, size in zip(d["rows"], sizes):
                    block = np.asarray(r() if callable(r) else r, dtype=dtype).reshape(-1)
                    if block.size != size:
                        raise StoreError(
                            f"{path}: split {split}: a block of {block.size} values where {size} were expected"
                        )
                    if size:
                        ds[start : start + size] = block
                    start += int(size)
                g.attrs["structure_content_hash"] = d["structure_content_hash"]
                g.attrs["n_structures"] = len(n_atoms)


def _file_attrs(f, fmt, attrs):
    f.attrs["format"] = fmt
    f.attrs["format_version"] = 1
    f.attrs["energy_unit"] = "eV"
    f.attrs["length_unit"] = "Angstrom"
    f.attrs["force_unit"] = "eV/Angstrom"
    for k, v in sorted(attrs.items()):
        f.attrs[k] = (
            v if isinstance(v, (str, int, float, bool, np.integer, np.floating)) else json.dumps(v, sort_keys=True)
        )
