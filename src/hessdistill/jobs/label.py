"""Teacher labelling job: energies/forces for every split, Hessian rows for chosen splits.

    hessdistill-label-teacher STRUCTURES.h5 --teacher chgnet --labels-out labels.h5 \\
        [--hessians-out hessians.h5 --hessian-splits train test --rows 4|full --row-seed 0] \\
        [--dtype float64] [--device auto] [--chunk-size 16] [--node-features]

(the same command: ``hessdistill-label`` or ``python -m hessdistill.jobs.label``; the workflow's rule label_teacher
calls :func:`snakemake_job`.)

Work is cut into chunks of structures.  Each finished chunk is saved atomically as one file in
``<labels-out>.parts/`` next to a ``manifest.json`` that fingerprints the settings (teacher, version, dtype,
structure-store content hashes, row selection).  A killed job rerun with the same settings skips every
finished chunk, so no structure is computed twice; a rerun with *different* settings refuses to mix
results and says how to start over.  When every chunk is done the labels and Hessian files are assembled
(each written atomically) and the parts folder is removed.

Rows: ``--rows full`` stores the whole 3N x 3N Hessian; ``--rows k`` stores a fixed random subset of k rows
per structure, drawn from (row seed, split, structure index) only (see hessian.sample_rows), so the choice
does not depend on chunking or on resumption.  For structures with 3N <= k all rows are stored.

Node features (``--node-features``, off by default): for every labelled split the labels file also gets
``node_features`` (ΣN, F) float32, the teacher's last-layer invariant node features (``Teacher.node_features``;
which tensor, per model, is written to the file attribute ``node_features``), row-aligned with ``forces``, and
the teacher's element embedding table (file-level ``element_numbers``, ``element_embeddings``).  They come from
the same forward pass as the labels where the teacher can capture them.  The manifest records the option (and
F), so parts computed with and without features are never mixed.  Teachers without node features (ASE
finite-difference, plain torch models) refuse the option with a clear error.

Sharded labelling (workflow key ``teachers.<name>.shards: N``, an integer >= 1, at most the number of structures
of the subset; absent or 1: this single job, unchanged).  With N > 1 the workflow runs N ``label_teacher_shard``
jobs and one ``label_teacher_merge`` job instead (:mod:`hessdistill.jobs.label_shards`): shard k labels the structures
at global positions g = k mod N of the store (all splits in order), saving each structure atomically in a cache
keyed by the labelling inputs (teacher, structure content hashes, rows, seed, dtypes, node features) and its
split and index, ``results/{subset}/teachers/{teacher}/label_cache/<digest>/``; a shard takes the structures
already there, so a killed shard resumes and a new N recomputes nothing.  The merge writes labels.h5 and
hessians.h5 with arrays bitwise identical to this job's (file attribute ``label_shards`` = N added).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from ..core import hessian as hess
from ..core.atomic import atomic_path, atomic_write_text
from ..core.devices import device_record
from ..core.errors import HessdistillError, StoreError, TeacherError
from ..data.labels import write_hessians, write_labels

log = logging.getLogger("hessdistill.jobs.label")

_SPLIT_SALT = {}


class _ChunkBlocks:
    """The Hessian blocks of one chunk file, handed to the writer one structure at a time: the chunk's values are
    read once, when its first block is written, and released after its last; the file is open only while it is
    read (a merge of thousands of one-structure files would otherwise hold thousands of open files)."""

    def __init__(self, path, n_blocks: int):
        self.path, self.left, self.values = path, n_blocks, None

    def block(self, start: int, size: int, shape: tuple) -> np.ndarray:
        if self.values is None:
            with np.load(self.path) as z:
                self.values = z["values"]
        out = self.values[start : start + size].reshape(shape)
        self.left -= 1
        if self.left == 0:
            self.values = None
        return out


def _split_key(split: str) -> int:
    """A stable integer for a split name (for seeding row draws)."""
    if split not in _SPLIT_SALT:
        _SPLIT_SALT[split] = int.from_bytes(hashlib.sha256(split.encode()).digest()[:4], "little")
    return _SPLIT_SALT[split]


def rows_for(n_atoms: int, rows_per_structure, row_seed: int, split: str, index: int) -> np.ndarray:
    k = None if rows_per_structure in (None, "full") else int(rows_per_structure)
    return hess.sample_rows(n_atoms, k, seed=row_seed, structure_key=(_split_key(split) << 32) + int(index))


def assemble_split(paths, content_hash: str, feature_info: dict | None, hessians: bool):
    """One split's arrays from its chunk files (paths, in order; a chunk holds one or more structures): the labels
    dict for :func:`~hessdistill.data.labels.write_labels` and, with ``hessians``, the Hessians dict for
    :func:`~hessdistill.data.labels.write_hessians` whose blocks are read one structure at a time
    (:class:`_ChunkBlocks`), else None.  Shared by the single job and the sharded merge."""
    chunks = []
    for p in paths:  # everything but the Hessian values, which can be large
        with np.load(p) as z:
            chunks.append({k: z[k] for k in z.files if k != "values"})
    n_atoms = np.concatenate([c["n_atoms"] for c in chunks]) if chunks else np.zeros(0, np.int64)
    labels = {
        "energy": np.concatenate([c["energy"] for c in chunks]) if chunks else np.zeros(0),
        "forces": np.concatenate([c["forces"] for c in chunks]) if chunks else np.zeros((0, 3)),
        "n_atoms": n_atoms,
        "wall_time": np.concatenate([c["wall_time"] for c in chunks]) if chunks else np.zeros(0),
        "structure_content_hash": content_hash,
    }
    if feature_info is not None:
        labels["node_features"] = (
            np.concatenate([c["node_features"] for c in chunks])
            if chunks
            else np.zeros((0, feature_info["dim"]), np.float32)
        )
    if not hessians:
        return labels, None
    row_index, rows = [], []
    for p, c in zip(paths, chunks):
        ro = np.concatenate([[0], np.cumsum(c["row_counts"])])
        blocks = _ChunkBlocks(p, len(c["n_atoms"]))
        vo = 0
        for j, n in enumerate(c["n_atoms"]):
            idx = c["row_index"][ro[j] : ro[j + 1]]
            size = len(idx) * 3 * int(n)
            row_index.append(idx)
            rows.append(functools.partial(blocks.block, vo, size, (len(idx), 3 * int(n))))
            vo += size
    return labels, {"n_atoms": n_atoms, "row_index": row_index, "rows": rows, "structure_content_hash": content_hash}


def label_settings(
    store,
    structures,
    teacher,
    *,
    splits=None,
    hessian_splits=None,
    hessians=True,
    rows_per_structure="full",
    row_seed: int = 0,
    storage_dtype=None,
    node_features=False,
) -> dict:
    """The checked labelling settings as the manifest that names them: teacher metadata, the content hash of each
    labelled split, splits, Hessian splits, rows per structure ("full" or a positive int), row seed, storage dtype
    and (only when on) node-feature info.  Shared by the single job and the sharded one
    (:mod:`hessdistill.jobs.label_shards`), so both accept and refuse the same inputs."""
    if rows_per_structure not in (None, "full"):
        try:
            rows_per_structure = int(rows_per_structure)
        except (TypeError, ValueError):
            raise HessdistillError(
                f"rows per structure must be 'full' or a positive integer, got {rows_per_structure!r}"
            ) from None
        if rows_per_structure <= 0:
            raise HessdistillError(f"rows per structure must be 'full' or a positive integer, got {rows_per_structure}")
    else:
        rows_per_structure = "full"
    all_splits = list(store.splits)
    splits = list(splits) if splits else all_splits
    for s in splits:
        if s not in all_splits:
            raise StoreError(
                f"has no split {s!r} (splits: {', '.join(all_splits)})",
                path=structures,
                fix="choose splits that exist in the structure store",
            )
    hessian_splits = [] if not hessians else (list(hessian_splits) if hessian_splits else list(splits))
    for s in hessian_splits:
        if s not in splits:
            raise HessdistillError(f"Hessian split {s!r} is not among the labelled splits {splits}")
    meta = teacher.metadata()
    storage_dtype = np.dtype(storage_dtype or ("float64" if meta["teacher_dtype"] == "float64" else "float32"))
    manifest = {
        "teacher": meta,
        "structures_content_hash": {s: store.content_hash(s) for s in splits},
        "splits": splits,
        "hessian_splits": hessian_splits,
        "rows_per_structure": rows_per_structure,
        "row_seed": int(row_seed),
        "storage_dtype": storage_dtype.name,
    }
    if node_features:
        # only present when on, so manifests of runs without features are unchanged (and still resumable);
        # switching the option either way changes the manifest and is refused on resume
        manifest["node_features"] = _feature_info(teacher)
    return manifest


def run_labelling(
    structures,
    teacher,
    labels_out,
    *,
    hessians_out=None,
    hessian_splits=None,
    splits=None,
    rows_per_structure="full",
    row_seed: int = 0,
    storage_dtype=None,
    chunk_size: int = 16,
    progress: bool = True,
    computed_log=None,
    node_features: bool = False,
) -> dict:
    """Label a structure store with ``teacher`` (a :class:`~hessdistill.teachers.Teacher`).

    Returns a summary dict (counts, time spent, chunks computed and skipped).  ``computed_log``, if given,
    is a list that receives (split, index) of every structure computed by *this* call (used by tests to
    show that a resumed job computes nothing twice).  ``node_features`` also stores the teacher's node features
    and element embedding table (see the module docstring).
    """
    from ..data.store import StructureStore

    labels_out = Path(labels_out)
    hessians_out = Path(hessians_out) if hessians_out else None
    if chunk_size <= 0:
        raise HessdistillError(f"chunk size must be positive, got {chunk_size}")
    if hessian_splits and hessians_out is None:
        raise HessdistillError("Hessian splits given but no Hessian output file (--hessians-out)")

    store = StructureStore(structures)
    manifest = label_settings(
        store,
        structures,
        teacher,
        splits=splits,
        hessian_splits=hessian_splits,
        hessians=hessians_out is not None,
        rows_per_structure=rows_per_structure,
        row_seed=row_seed,
        storage_dtype=storage_dtype,
        node_features=node_features,
    )
    manifest["chunk_size"] = int(chunk_size)
    splits, hessian_splits = manifest["splits"], manifest["hessian_splits"]
    rows_per_structure, storage_dtype = manifest["rows_per_structure"], np.dtype(manifest["storage_dtype"])
    node_features = "node_features" in manifest
    feature_info = manifest.get("node_features")
    meta = manifest["teacher"]
    parts = labels_out.parent / (labels_out.name + ".parts")
    _prepare_parts(parts, manifest)

    n_done = n_computed = 0
    t_start = time.perf_counter()
    total = sum(store.n_structures(s) for s in splits)
    bar = _progress(total, progress, desc=f"labels {teacher.name}")
    for split in splits:
        m = store.n_structures(split)
        want_h = split in hessian_splits
        for c0 in range(0, m, chunk_size):
            part = parts / f"{split}-{c0 // chunk_size:06d}.npz"
            c1 = min(m, c0 + chunk_size)
            if part.exists():
                bar.update(c1 - c0)
                n_done += c1 - c0
                continue
            energy, forces, n_atoms, wall, row_idx, rows, feats = [], [], [], [], [], [], []
            for i in range(c0, c1):
                atoms = store.atoms(split, i)
                teacher.check_atoms(atoms, index=i, path=f"{structures}[{split}]")
                sel = rows_for(len(atoms), rows_per_structure, row_seed, split, i) if want_h else None
                t0 = time.perf_counter()
                if node_features:
                    e, f, h, x = teacher.labels_with_features(atoms, rows=sel)
                else:
                    e, f, h = teacher.labels(atoms, rows=sel)
                wall.append(time.perf_counter() - t0)
                check_finite(e, f, h, structures, split, i, teacher.name)
                if node_features:
                    feats.append(check_features(x, len(atoms), feature_info["dim"], structures, split, i, teacher.name))
                energy.append(e)
                forces.append(np.asarray(f, dtype=np.float64).reshape(-1, 3))
                n_atoms.append(len(atoms))
                if want_h:
                    row_idx.append(sel)
                    rows.append(np.asarray(h, dtype=storage_dtype))
                if computed_log is not None:
                    computed_log.append((split, i))
                n_computed += 1
                bar.update(1)
            payload = {
                "energy": np.asarray(energy),
                "forces": np.concatenate(forces),
                "n_atoms": np.asarray(n_atoms),
                "wall_time": np.asarray(wall),
            }
            if node_features:
                payload["node_features"] = np.concatenate(feats).astype(np.float32, copy=False)
            if want_h:
                payload["row_counts"] = np.array([len(r) for r in row_idx])
                payload["row_index"] = np.concatenate(row_idx)
                payload["values"] = np.concatenate([r.reshape(-1) for r in rows])
            with atomic_path(part, suffix=".tmp.npz") as tmp:
                np.savez(tmp, **payload)
            n_done += c1 - c0
    bar.close()

    per_split_labels, per_split_h = {}, {}
    for split in splits:
        per_split_labels[split], h = assemble_split(
            sorted(parts.glob(f"{split}-*.npz")),
            manifest["structures_content_hash"][split],
            feature_info,
            split in hessian_splits,
        )
        if h is not None:
            per_split_h[split] = h
        n_atoms = per_split_labels[split]["n_atoms"]
        if len(n_atoms) != store.n_structures(split):
            raise HessdistillError(
                f"internal error: split {split} assembled {len(n_atoms)} of {store.n_structures(split)} structures"
            )

    # where the labels were computed (attributes only: not in the manifest, so a resume may change device)
    computed_on = {k: ("" if v is None else v) for k, v in device_record(teacher.device).items()}
    attrs = {**meta, "structures": str(structures), **computed_on}
    if hessians_out is not None:
        write_hessians(
            hessians_out,
            per_split_h,
            {
                **attrs,
                "rows_per_structure": str(rows_per_structure),
                "row_seed": int(row_seed),
                "symmetric": bool(meta["conservative"]),
            },
            storage_dtype,
        )
    label_attrs, table = attrs, None
    if node_features:
        table = teacher.element_embeddings()
        label_attrs = {
            **attrs,
            "node_features": feature_info["description"],
            "node_feature_dim": int(feature_info["dim"]),
            "node_features_dtype": "float32",
            "element_embeddings": str(
                getattr(teacher, "element_embeddings_description", None) or doc_line(type(teacher).element_embeddings)
            ),
        }
    write_labels(labels_out, per_split_labels, label_attrs, element_embeddings=table)
    shutil.rmtree(parts)
    summary = {
        "teacher": meta,
        "splits": {s: store.n_structures(s) for s in splits},
        "hessian_splits": hessian_splits,
        "structures_computed": n_computed,
        "structures_resumed": n_done - n_computed,
        "wall_time_s": time.perf_counter() - t_start,
        "teacher_time_s": float(sum(d["wall_time"].sum() for d in per_split_labels.values())),
        "node_features": node_features,
        "node_feature_dim": feature_info["dim"] if node_features else None,
    }
    return summary


def load_job_teacher(teacher, device=None, dtype="float64"):
    """``teacher`` as given if it is a Teacher, else loaded on ``device`` in ``dtype`` from its name or its
    workflow config entry ({"model", "options", "vjp_method", ...})."""
    from ..teachers import load_teacher, teacher_from_spec

    if isinstance(teacher, str):
        return load_teacher(teacher, device=device, dtype=dtype)
    if isinstance(teacher, dict):
        return teacher_from_spec(teacher, device=device, dtype=dtype)
    return teacher


def run(structures, teacher, labels_out, *, device=None, dtype="float64", **options) -> dict:
    """The labelling job as a library call: ``teacher`` is a :class:`~hessdistill.teachers.Teacher`, a teacher
    name or a workflow config entry of one (loaded on ``device`` in ``dtype``); ``options`` as
    :func:`run_labelling`.  Returns its summary."""
    return run_labelling(structures, load_job_teacher(teacher, device, dtype), labels_out, **options)


def snakemake_job(smk, device=None) -> dict:
    """Rule label_teacher: ``input.structures`` -> ``output.labels`` (every split) and ``output.hessians`` (the
    teacher entry's ``hessian_splits``), with the teacher of ``params.teacher`` (its config entry, without
    ``shards``) on ``device``.  Returns the labelling summary."""
    t = smk.params.teacher
    return run(
        smk.input.structures,
        t,
        smk.output.labels,
        device=device,
        dtype=t["dtype"],
        hessians_out=smk.output.hessians,
        hessian_splits=t["hessian_splits"],
        rows_per_structure=t["rows"],
        row_seed=t["row_seed"],
        storage_dtype=t["storage_dtype"],
        chunk_size=t["chunk_size"],
        node_features=t["node_features"],
        progress=False,
    )


def doc_line(fn) -> str:
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else getattr(fn, "__qualname__", "?")


def _feature_info(teacher) -> dict:
    """What the manifest and the labels file record about the node features of ``teacher``."""
    if not getattr(teacher, "supports_node_features", False):
        raise TeacherError(
            f"node features requested, but teacher {teacher.name!r} ({type(teacher).__name__}) does not provide them\n"
            f"  fix: drop --node-features (node_features: true), or use a chgnet, sevenn or mace teacher"
        )
    dim = teacher.feature_dim
    desc = getattr(teacher, "node_features_description", None) or doc_line(type(teacher).node_features)
    return {"dim": int(dim), "dtype": "float32", "description": str(desc)}


def check_features(x, n_atoms, dim, path, split, i, teacher) -> np.ndarray:
    x = np.asarray(x)
    if x.shape != (n_atoms, dim):
        raise HessdistillError(
            f"teacher {teacher} returned node features of shape {x.shape} for structure {i} of split "
            f"{split!r} in {path}; expected ({n_atoms}, {dim})"
        )
    if not np.isfinite(x).all():
        raise HessdistillError(
            f"teacher {teacher} returned NaN/inf node features for structure {i} of split {split!r} in {path}\n"
            f"  fix: inspect that structure and drop it"
        )
    return x.astype(np.float32)


def _prepare_parts(parts: Path, manifest: dict) -> None:
    mpath = parts / "manifest.json"
    text = json.dumps(manifest, sort_keys=True, indent=1)
    if mpath.exists():
        old = mpath.read_text()
        if old != text:
            raise HessdistillError(
                f"{parts} holds partial results of a labelling run with different settings:\n"
                f"  before: {_diff(json.loads(old), manifest)}\n"
                f"  fix: delete {parts} (or pass --restart) to start over with the new settings"
            )
        done = len(list(parts.glob("*.npz")))
        log.info("resuming from %s (%d finished chunks)", parts, done)
        return
    parts.mkdir(parents=True, exist_ok=True)
    for stale in parts.glob("*"):
        if stale.is_file():
            stale.unlink()
    atomic_write_text(mpath, text)


def _diff(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    return "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))


def check_finite(e, f, h, path, split, i, teacher):
    bad = not np.isfinite(e) or not np.isfinite(f).all() or (h is not None and not np.isfinite(h).all())
    if bad:
        raise HessdistillError(
            f"teacher {teacher} returned NaN/inf for structure {i} of split {split!r} in {path}\n"
            f"  fix: inspect that structure (overlapping atoms? elements outside the teacher's training set?) and drop it"
        )


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total, enabled, desc):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="struct", mininterval=1.0, file=sys.stderr)


def add_labelling_arguments(p: argparse.ArgumentParser) -> None:
    """The options the single labelling job and a shard of a sharded one share (which rows, dtypes, device)."""
    p.add_argument("--splits", nargs="*", help="splits to label (default: all)")
    p.add_argument("--hessian-splits", nargs="*", help="splits that get Hessians (default: all labelled splits)")
    p.add_argument("--rows", default="full", help="'full' or k rows per structure")
    p.add_argument("--row-seed", type=int, default=0)
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"], help="teacher compute dtype")
    p.add_argument(
        "--storage-dtype", choices=["float32", "float64"], help="Hessian storage dtype (default: teacher dtype)"
    )
    p.add_argument("--device", default="auto")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hessdistill-label-teacher",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("structures", help="structure store (HDF5) to label")
    p.add_argument(
        "--teacher",
        required=True,
        help="teacher name, e.g. chgnet, sevenn, mace-off:large, ase:ase.calculators.emt:EMT",
    )
    p.add_argument("--teacher-options", default="{}", help="JSON dict of teacher options")
    p.add_argument("--labels-out", required=True)
    p.add_argument("--hessians-out")
    add_labelling_arguments(p)
    p.add_argument("--chunk-size", type=int, default=16)
    p.add_argument("--restart", action="store_true", help="discard partial results of an earlier run")
    p.add_argument("--summary-out", help="write a JSON summary here")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument(
        "--node-features",
        action="store_true",
        help="also store the teacher's last-layer invariant node features (ΣN, F) and element embedding table",
    )
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import torch

    from ..teachers import load_teacher

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        options = json.loads(args.teacher_options)
        if args.restart:
            parts = Path(args.labels_out).parent / (Path(args.labels_out).name + ".parts")
            if parts.exists():
                shutil.rmtree(parts)
        teacher = load_teacher(args.teacher, device=args.device, dtype=args.dtype, **options)
        summary = run_labelling(
            args.structures,
            teacher,
            args.labels_out,
            hessians_out=args.hessians_out,
            hessian_splits=args.hessian_splits,
            splits=args.splits,
            rows_per_structure=args.rows,
            row_seed=args.row_seed,
            storage_dtype=args.storage_dtype,
            chunk_size=args.chunk_size,
            progress=not args.no_progress,
            node_features=args.node_features,
        )
    except HessdistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.summary_out:
        atomic_write_text(args.summary_out, json.dumps(summary, indent=1, sort_keys=True, default=str))
    print(
        json.dumps(
            {k: summary[k] for k in ("splits", "structures_computed", "structures_resumed", "wall_time_s")}, default=str
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
