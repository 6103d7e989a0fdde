"""Sharded teacher labelling: N shard jobs label disjoint sets of structures, one merge job writes the files.

For paper-scale runs (thousands of full Hessians with a large teacher) one labelling job is too long for a
cluster job.  With ``teachers.<name>.shards: N`` (N > 1) the workflow runs

- ``label_teacher_shard`` x N (:func:`run_label_shard`): shard k labels the structures that
  :func:`shard_assignment` deals it (the structures of all splits, in store order, dealt round-robin: global
  position g goes to shard g mod N, so every shard gets a share of every split, and the Hessian splits are
  spread evenly);
- ``label_teacher_merge`` (:func:`merge_label_shards`): reads every structure back and writes ``labels.h5`` and
  ``hessians.h5`` exactly as the single ``label_teacher`` job does (same datasets, dtypes and attributes;
  ``wall_time`` is a measurement; the files also carry the attribute ``label_shards = N``).

Work is keyed per *structure*, not per shard: every labelled structure is saved atomically as
``<cache root>/<digest>/<split>-<index>.npz``, where the digest fingerprints everything its values depend on
(teacher name, version and dtype, the structure store's content hash per split, the labelled and Hessian
splits, row selection, storage dtype, node features; not the device, the chunk size or the shard count; the
settings are written to ``manifest.json`` beside the files).  A shard first takes every structure of its share
that is already there, so

- a killed shard rerun with the same inputs computes only what it had not finished (resumption); with other
  inputs the digest differs and nothing is reused (no mixing);
- changing N reruns the shard jobs, but they recompute nothing already labelled: the new shares are read
  from the cache.

The per-structure computation and the assembly are the ones of :func:`hessdistill.jobs.label.run_labelling`
(per-structure teacher calls, the same row selection :func:`hessdistill.jobs.label.rows_for`), so the merged arrays
are bitwise identical to an unsharded run's.  The cache stays after the merge (that is what makes a change
of N cheap; it holds about as much as labels.h5 + hessians.h5); deleting it only costs recomputation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_path, atomic_write_text
from ..core.errors import HessdistillError
from ..data.labels import write_hessians, write_labels
from .label import (
    add_labelling_arguments,
    assemble_split,
    check_features,
    check_finite,
    doc_line,
    label_settings,
    load_job_teacher,
    rows_for,
)

log = logging.getLogger("hessdistill.jobs.label_shards")

#: cache folder name, beside labels.h5 (results/{subset}/teachers/{teacher}/label_cache)
CACHE_DIRNAME = "label_cache"
CACHE_FORMAT = "hessdistill.label_cache/1"


# ---------------------------------------------------------------- which structures a shard labels
def check_shard_count(n_shards, n_structures: int, key: str = "shards") -> int:
    """``n_shards`` as an int; a :class:`HessdistillError` naming ``key`` when it is < 1 or > ``n_structures``."""
    if isinstance(n_shards, bool) or not isinstance(n_shards, (int, np.integer)) or n_shards < 1:
        raise HessdistillError(
            f"config key '{key}': {n_shards!r} is not valid: expected an integer >= 1\n"
            f"  fix: set {key} to the number of labelling jobs (1: one job)"
        )
    if n_shards > n_structures:
        raise HessdistillError(
            f"config key '{key}': {n_shards} shards but only {n_structures} structures to label\n"
            f"  fix: set {key} to at most {n_structures} (1: one job)"
        )
    return int(n_shards)


def shard_assignment(counts: dict, n_shards: int, key: str = "shards") -> list[list[tuple[str, int]]]:
    """The (split, index) pairs of each of ``n_shards`` shards, for splits of ``counts`` ({split: n}, in
    labelling order): global position g in the split-by-split order goes to shard g mod n_shards.
    Deterministic, disjoint and complete; every shard gets at least one structure."""
    total = sum(int(m) for m in counts.values())
    n_shards = check_shard_count(n_shards, total, key)
    out: list[list[tuple[str, int]]] = [[] for _ in range(n_shards)]
    g = 0
    for split, m in counts.items():
        for i in range(int(m)):
            out[g % n_shards].append((split, i))
            g += 1
    return out


# ---------------------------------------------------------------- settings and the cache key
def _settings(
    store,
    teacher,
    splits,
    hessian_splits,
    hessians,
    rows_per_structure,
    row_seed,
    storage_dtype,
    node_features,
    structures,
):
    """Validated settings and the cache manifest: hessdistill.jobs.label.label_settings plus the cache format."""
    return {
        "format": CACHE_FORMAT,
        **label_settings(
            store,
            structures,
            teacher,
            splits=splits,
            hessian_splits=hessian_splits,
            hessians=hessians,
            rows_per_structure=rows_per_structure,
            row_seed=row_seed,
            storage_dtype=storage_dtype,
            node_features=node_features,
        ),
    }


def manifest_digest(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:20]


def _structure_file(cache_dir: Path, split: str, index: int) -> Path:
    return cache_dir / f"{split}-{int(index):07d}.npz"


def _prepare_cache(cache_root: Path, manifest: dict) -> Path:
    cache_dir = Path(cache_root) / manifest_digest(manifest)
    cache_dir.mkdir(parents=True, exist_ok=True)
    mpath = cache_dir / "manifest.json"
    text = json.dumps(manifest, sort_keys=True, indent=1)
    if mpath.exists():
        if mpath.read_text() != text:
            raise HessdistillError(
                f"{mpath} does not hold the settings its name is the digest of\n"
                f"  fix: delete {cache_dir} (a cache of labelled structures) and rerun"
            )
    else:
        atomic_write_text(mpath, text)  # shards running at once write the same text
    return cache_dir


# ---------------------------------------------------------------- one structure, one shard
def _label_structure(store, teacher, structures, split, i, manifest, feature_info) -> dict:
    """The payload of one structure: a chunk of one, in the format of hessdistill.jobs.label's chunk files."""
    want_h = split in manifest["hessian_splits"]
    storage_dtype = np.dtype(manifest["storage_dtype"])
    atoms = store.atoms(split, i)
    teacher.check_atoms(atoms, index=i, path=f"{structures}[{split}]")
    sel = rows_for(len(atoms), manifest["rows_per_structure"], manifest["row_seed"], split, i) if want_h else None
    t0 = time.perf_counter()
    if feature_info is not None:
        e, f, h, x = teacher.labels_with_features(atoms, rows=sel)
    else:
        e, f, h = teacher.labels(atoms, rows=sel)
    wall = time.perf_counter() - t0
    check_finite(e, f, h, structures, split, i, teacher.name)
    payload = {
        "energy": np.asarray([e]),
        "forces": np.asarray(f, dtype=np.float64).reshape(-1, 3),
        "n_atoms": np.asarray([len(atoms)]),
        "wall_time": np.asarray([wall]),
    }
    if feature_info is not None:
        x = check_features(x, len(atoms), feature_info["dim"], structures, split, i, teacher.name)
        payload["node_features"] = np.asarray(x, dtype=np.float32)
    if want_h:
        rows = np.asarray(h, dtype=storage_dtype)
        payload["row_counts"] = np.array([len(sel)])
        payload["row_index"] = np.asarray(sel)
        payload["values"] = rows.reshape(-1)
    return payload


def run_label_shard(
    structures,
    teacher,
    cache_root,
    shard: int,
    n_shards: int,
    *,
    summary_out=None,
    hessians=True,
    hessian_splits=None,
    splits=None,
    rows_per_structure="full",
    row_seed: int = 0,
    storage_dtype=None,
    node_features: bool = False,
    key: str = "shards",
    computed_log=None,
) -> dict:
    """Label shard ``shard`` of ``n_shards`` of a structure store into the per-structure cache under
    ``cache_root`` (see the module docstring); structures already in the cache are taken, not recomputed.

    Arguments as :func:`hessdistill.jobs.label.run_labelling` (``hessians``: whether Hessian rows are computed, as
    giving ``hessians_out`` there).  ``key`` names the shard count in error messages
    (``teachers.<name>.shards``).  Returns a summary (and writes it as JSON to ``summary_out``) that
    :func:`merge_label_shards` reads.  ``computed_log`` receives (split, index) of every structure computed.
    """
    from ..core.devices import device_record
    from ..data.store import StructureStore

    if not isinstance(shard, (int, np.integer)) or not 0 <= shard < int(n_shards):
        raise HessdistillError(f"shard index {shard!r} is not in 0..{n_shards}-1")
    t_start = time.perf_counter()
    store = StructureStore(structures)
    manifest = _settings(
        store,
        teacher,
        splits,
        hessian_splits,
        hessians,
        rows_per_structure,
        row_seed,
        storage_dtype,
        node_features,
        structures,
    )
    counts = {s: store.n_structures(s) for s in manifest["splits"]}
    share = shard_assignment(counts, n_shards, key)[int(shard)]
    cache_dir = _prepare_cache(Path(cache_root), manifest)
    feature_info = manifest.get("node_features")
    n_computed = n_reused = 0
    for split, i in share:
        path = _structure_file(cache_dir, split, i)
        if path.exists():
            n_reused += 1
            continue
        payload = _label_structure(store, teacher, structures, split, i, manifest, feature_info)
        with atomic_path(path, suffix=".tmp.npz") as tmp:
            np.savez(tmp, **payload)
        if computed_log is not None:
            computed_log.append((split, i))
        n_computed += 1
    log.info("shard %d/%d: %d structures computed, %d taken from %s", shard, n_shards, n_computed, n_reused, cache_dir)

    label_attrs = {}
    if feature_info is not None:
        numbers, table = teacher.element_embeddings()
        with atomic_path(cache_dir / "element_embeddings.npz", suffix=".tmp.npz") as tmp:
            np.savez(tmp, numbers=np.asarray(numbers), table=np.asarray(table))
        label_attrs = {
            "node_features": feature_info["description"],
            "node_feature_dim": int(feature_info["dim"]),
            "node_features_dtype": "float32",
            "element_embeddings": str(
                getattr(teacher, "element_embeddings_description", None) or doc_line(type(teacher).element_embeddings)
            ),
        }
    summary = {
        "shard": int(shard),
        "shards": int(n_shards),
        "cache_dir": str(cache_dir),
        "digest": cache_dir.name,
        "teacher": manifest["teacher"],
        "structures": len(share),
        "structures_computed": n_computed,
        "structures_resumed": n_reused,
        "assigned": {s: [i for s2, i in share if s2 == s] for s in counts},
        "computed_on": {k: ("" if v is None else v) for k, v in device_record(teacher.device).items()},
        "label_attrs": label_attrs,
        "wall_time_s": time.perf_counter() - t_start,
    }
    if summary_out is not None:
        atomic_write_text(summary_out, json.dumps(summary, indent=1, sort_keys=True, default=str))
    return summary


# ---------------------------------------------------------------- the merge
def _merged_record(records: list[dict]) -> dict:
    """One provenance record from the shards': a value where they agree, the distinct values joined by ', '."""
    out = {}
    for k in sorted({k for r in records for k in r}):
        values = []
        for r in records:
            v = r.get(k, "")
            if v not in values:
                values.append(v)
        out[k] = values[0] if len(values) == 1 else ", ".join(str(v) for v in values)
    return out


def merge_label_shards(structures, shard_summaries, labels_out, hessians_out=None) -> dict:
    """Write ``labels_out`` (and ``hessians_out``) from the cache the shards of ``shard_summaries`` (their JSON
    files, or dicts) filled: the files hessdistill.jobs.label.run_labelling writes for the same settings, plus the
    attribute ``label_shards``.  Every structure of the store must be in the cache."""
    from ..data.store import StructureStore

    sums = [json.loads(Path(s).read_text()) if not isinstance(s, dict) else s for s in shard_summaries]
    if not sums:
        raise HessdistillError("no shard summaries to merge")
    n_shards = sums[0]["shards"]
    if sorted(s["shard"] for s in sums) != list(range(n_shards)) or any(s["shards"] != n_shards for s in sums):
        raise HessdistillError(
            f"the shard summaries are not shards 0..{n_shards - 1} of {n_shards}: "
            f"{sorted((s['shard'], s['shards']) for s in sums)}"
        )
    if len({s["cache_dir"] for s in sums}) != 1:
        raise HessdistillError(
            f"the shards labelled with different settings (caches {sorted({s['cache_dir'] for s in sums})})\n"
            f"  fix: rerun the shard jobs"
        )
    cache_dir = Path(sums[0]["cache_dir"])
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    store = StructureStore(structures)
    for split, h in manifest["structures_content_hash"].items():
        if split not in store.splits or store.content_hash(split) != h:
            raise HessdistillError(
                f"{structures} changed since the shards labelled it (split {split!r})\n  fix: rerun the shard jobs"
            )
    splits, hessian_splits = manifest["splits"], manifest["hessian_splits"]
    feature_info = manifest.get("node_features")
    storage_dtype = np.dtype(manifest["storage_dtype"])
    rows_per_structure = manifest["rows_per_structure"]

    per_split_labels, per_split_h = {}, {}
    for split in splits:
        chunks = []
        for i in range(store.n_structures(split)):
            path = _structure_file(cache_dir, split, i)
            if not path.exists():
                raise HessdistillError(
                    f"structure {i} of split {split!r} is missing from {cache_dir}\n"
                    f"  fix: rerun the shard jobs (snakemake reruns them when their log shows a failure)"
                )
            chunks.append(path)
        per_split_labels[split], h = assemble_split(
            chunks, manifest["structures_content_hash"][split], feature_info, split in hessian_splits
        )
        if h is not None:
            per_split_h[split] = h

    meta = manifest["teacher"]
    attrs = {
        **meta,
        "structures": str(structures),
        **_merged_record([s["computed_on"] for s in sums]),
        "label_shards": int(n_shards),
    }
    if hessians_out is not None:
        write_hessians(
            hessians_out,
            per_split_h,
            {
                **attrs,
                "rows_per_structure": str(rows_per_structure),
                "row_seed": int(manifest["row_seed"]),
                "symmetric": bool(meta["conservative"]),
            },
            storage_dtype,
        )
    table = None
    label_attrs = attrs
    if feature_info is not None:
        with np.load(cache_dir / "element_embeddings.npz") as z:
            table = (z["numbers"], z["table"])
        label_attrs = {**attrs, **sums[0]["label_attrs"]}
    write_labels(labels_out, per_split_labels, label_attrs, element_embeddings=table)
    for stale in cache_dir.glob(".*.tmp.npz"):  # temporary files of killed shards (every shard has finished now)
        stale.unlink(missing_ok=True)
    return {
        "shards": n_shards,
        "cache_dir": str(cache_dir),
        "splits": {s: store.n_structures(s) for s in splits},
        "structures_computed": sum(s["structures_computed"] for s in sums),
        "structures_resumed": sum(s["structures_resumed"] for s in sums),
    }


# ---------------------------------------------------------------- the shard job
def run(structures, teacher, cache_root, shard: int, n_shards: int, *, device=None, dtype="float64", **options) -> dict:
    """One labelling shard as a library call: ``teacher`` is a :class:`~hessdistill.teachers.Teacher`, a teacher
    name or a workflow config entry of one (loaded on ``device`` in ``dtype``); ``options`` as
    :func:`run_label_shard`.  Returns its summary."""
    return run_label_shard(structures, load_job_teacher(teacher, device, dtype), cache_root, shard, n_shards, **options)


def snakemake_job(smk, device=None) -> dict:
    """Rule label_teacher_shard: shard ``wildcards.shard`` of ``params.shards`` of ``input.structures``, labelled
    with the teacher of ``params.teacher`` on ``device`` into the cache ``label_cache`` of the teacher's folder
    (beside ``label_shards/``, where ``output.shard``, the summary for the merge job, goes).

    The cache is not an output, so Snakemake never deletes it: a rerun (a killed job, another shard count) takes
    the structures already there.  Returns the summary without its ``assigned`` lists."""
    t = smk.params.teacher
    w = smk.wildcards
    cache_root = Path(smk.output.shard).parent.parent / CACHE_DIRNAME
    summary = run(
        smk.input.structures,
        t,
        cache_root,
        int(w.shard),
        int(smk.params.shards),
        device=device,
        dtype=t["dtype"],
        summary_out=smk.output.shard,
        hessians=True,
        hessian_splits=t["hessian_splits"],
        rows_per_structure=t["rows"],
        row_seed=t["row_seed"],
        storage_dtype=t["storage_dtype"],
        node_features=t["node_features"],
        key=f"teachers.{w.teacher}.shards",
    )
    return {k: v for k, v in summary.items() if k != "assigned"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hessdistill-label-teacher-shard",
        description=__doc__.split("\n\n")[0],
        epilog="The shards' summaries are merged by hessdistill-label-teacher-merge.",
    )
    p.add_argument("structures", help="structure store (HDF5) to label")
    p.add_argument("--teacher", required=True, help="teacher name, e.g. chgnet, sevenn, mace-off:large")
    p.add_argument("--teacher-options", default="{}", help="JSON dict of teacher options")
    p.add_argument("--cache-root", required=True, help="the per-structure cache folder (shared by all shards)")
    p.add_argument("--shard", type=int, required=True, help="this shard's index, 0..SHARDS-1")
    p.add_argument("--shards", type=int, required=True, help="the number of shards")
    p.add_argument("--summary-out", required=True, help="this shard's JSON summary (an input of the merge)")
    p.add_argument("--no-hessians", action="store_true", help="labels only, no Hessian rows")
    add_labelling_arguments(p)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--node-features", action="store_true", help="also store the teacher's node features")
    return p


def main(argv=None) -> int:
    """``hessdistill-label-teacher-shard``: one shard of a sharded labelling (the rule label_teacher_shard)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        teacher = {"model": args.teacher, "options": json.loads(args.teacher_options)}
        summary = run(
            args.structures,
            teacher,
            args.cache_root,
            args.shard,
            args.shards,
            device=args.device,
            dtype=args.dtype,
            summary_out=args.summary_out,
            hessians=not args.no_hessians,
            splits=args.splits,
            hessian_splits=args.hessian_splits,
            rows_per_structure=args.rows,
            row_seed=args.row_seed,
            storage_dtype=args.storage_dtype,
            node_features=args.node_features,
        )
    except HessdistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "assigned"}, indent=1, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
