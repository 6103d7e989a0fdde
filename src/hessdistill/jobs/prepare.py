"""One job from a dataset to a subset store: read the source, select the subset, split it, write the store.

    python -m hessdistill.jobs.prepare SUBSET.yaml --out results/<subset>/data/structures.h5 [--report r.json]

The subset specification (YAML or JSON; in the workflow it is one entry of the config's ``subsets:``)::

    source:                     # where the structures come from
      name: mace-off            # spice2 | mace-off | mptrj | md22 | generic | builtin | sample
      path: data/train_large_neut_no_bad_clean.xyz
      options: {}               # reader options (see hessdistill.data.sources), or generator/sampling settings
    test_source:                # optional: a separate file for the test split (SPICE protocol)
      name: mace-off
      path: data/test_large_neut_all.xyz
    selectors:                  # hessdistill.data.subsets; applied to source and test_source alike
      - spice_group: DES370K Monomers
      - max_atoms: 60
    split:
      fractions: {train: 0.85, val: 0.15}   # or counts: {train: 500, val: 50, test: rest}
      seed: 0
      group_by: null            # an info key (mp_id, smiles, trajectory) kept whole in one split
      carve_test_from_train: false   # MPtrj protocol: test of size |val| carved out of train

The paper's MPtrj subsets split per frame (``group_by`` unset), 85/15, then carve a test split of |val|
frames from train; ``group_by: mp_id`` is the leak-free alternative (see :mod:`hessdistill.data.splits`).
The paper's MPtrj perovskites: ``selectors: [{space_group: {number: 221}}]`` (every frame of every Pm-3m
material; see :mod:`hessdistill.data.subsets`).  Selector provenance (for ``space_group``: spglib version,
symprec, angle tolerance, the frame analysed per material) is stored in the ``selection_report`` attribute.

``name: builtin`` generates the built-in offline dataset (``options``: ``family``, ``teacher``, ``dtype``,
``device`` and any :class:`~hessdistill.data.builtin.GeneratorSettings` field) instead of reading a file: this job
loads the teacher and gives it to the generator as an ASE calculator.

``name: sample`` samples around the seed structures of ``path`` (any file ``ase.io.read`` reads, periodic or not;
named by ``info['name']`` or ``seed<i>-<formula>``) with a teacher (:mod:`hessdistill.data.sampling`)::

    source:
      name: sample
      path: my_seeds.extxyz
      options: {teacher: chgnet, dtype: float32, device: cpu, n_trajectories: 8, seed_frames: true}

``options``: ``teacher``, ``dtype``, ``device`` and any :class:`~hessdistill.data.sampling.SamplingSettings`
field (``strains``, ``shear_sigma`` and ``supercells`` act on periodic seeds only).  ``seed_frames: true`` with
``n_trajectories: 0, n_rattle_series: 0`` labels the seeds themselves.  Finished trajectories are kept in
``<out>.sampling/`` until the store is written, so a rerun after a crash computes only the rest.  Unless the
split gives ``group_by`` (``null``: per frame), the frames are split grouped by ``trajectory``.  Built-in and
sampled stores record ``labels = "teacher:<name>"`` and the ``sampling_report`` attribute (frames made, frames
dropped by the guard rails per reason and parent, teacher calls); sampled ones also ``sampling_settings`` and
``sampling_teacher`` (name, version, dtype, device).

Everything that decides the output is in the specification, so the same specification and input files
give a byte-identical store; the store records the specification, the selection report (counts per
selector) and the split report.

Library calls: :func:`run` (and :func:`prepare_subset`, the same without writing a report file); the workflow's
``prepare_subset`` rule calls :func:`snakemake_job`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ..core.atomic import atomic_write_text
from ..core.errors import HessdistillError

_TOP_KEYS = {"source", "test_source", "selectors", "split"}
_SPLIT_KEYS = {"fractions", "counts", "seed", "group_by", "carve_test_from_train"}
_SOURCE_KEYS = {"name", "path", "url", "options", "sha256", "md5"}


def _check_keys(d, allowed, where):
    if not isinstance(d, dict):
        raise HessdistillError(f"{where} must be a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise HessdistillError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(allowed)}")


def _read(src: dict, where: str, base_dir: Path, out: Path):
    """(structures, source description, store attributes) of the source ``src``."""
    from ..data.sources import read_source, verify_checksum

    _check_keys(src, _SOURCE_KEYS, where)
    if "name" not in src:
        raise HessdistillError(
            f"{where}: 'name' is required (spice2, mace-off, mptrj, md22, generic, builtin or sample)"
        )
    options = dict(src.get("options") or {})
    if src["name"] == "builtin":
        structures, attrs = _builtin(options, where)
        return structures, "hessdistill.data.builtin", attrs
    if "path" not in src:
        raise HessdistillError(f"{where}: 'path' is required for source {src['name']!r}")
    path = Path(src["path"])
    if not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        fix = (
            "correct the path, or make the seeds file first (e.g. with an earlier workflow step)"
            if src["name"] == "sample"
            else "download it (see hessdistill.data.sources.SOURCES) or correct the path"
        )
        raise HessdistillError(f"{where}: file {str(path)!r} does not exist\n  fix: {fix}")
    for algo in ("sha256", "md5"):
        if src.get(algo):
            verify_checksum(path, src[algo], algo)
    if src["name"] == "sample":
        structures, attrs = _sample(path, options, where, out)
        return structures, f"hessdistill.data.sampling:{path}", attrs
    try:
        return read_source(src["name"], path, **options), str(path), {}
    except (TypeError, ValueError) as exc:
        if isinstance(exc, HessdistillError):
            raise
        raise HessdistillError(f"{where}: {exc}") from exc


def _teacher_calculator(options: dict):
    """(ASE calculator, teacher metadata + device) of the ``teacher``/``dtype``/``device`` options (popped)."""
    from ..teachers import load_teacher
    from ..teachers.calculator import TeacherCalculator

    device = options.pop("device", "cpu")
    teacher = load_teacher(options.pop("teacher", "chgnet"), device=device, dtype=options.pop("dtype", "float32"))
    return TeacherCalculator(teacher), {**teacher.metadata(), "device": device}


def _builtin(options: dict, where: str):
    from ..data.builtin import GeneratorSettings, generate_with_report, settings_from_options
    from ..data.sampling import report_json

    fields = GeneratorSettings.__dataclass_fields__
    unknown = sorted(set(options) - set(fields) - {"teacher", "dtype", "device"})
    if unknown:
        raise HessdistillError(
            f"{where}.options: unknown generator setting(s) {unknown}; valid: teacher, dtype, device, {', '.join(sorted(fields))}"
        )
    calculator, _ = _teacher_calculator(options)
    structures, report = generate_with_report(calculator, settings_from_options(**options))
    return structures, {"sampling_report": report_json(report)}


def seed_structures(path, where: str = "source") -> list:
    """The seed structures of a ``sample`` source: ``(name, Atoms)`` for every structure of ``path`` (any file
    ase.io.read reads), named by ``info['name']`` (made unique by appending ``-<index>`` to repeated names) or
    ``seed<index>-<formula>``; each checked (:func:`hessdistill.core.structures.validate_atoms`: a periodic seed
    needs independent cell vectors along its periodic axes; a non-periodic one is fine).  Only the geometry is
    kept (numbers, positions, cell, pbc, masses): labels, constraints and info in the file are not used."""
    import ase.io
    from ase import Atoms

    from ..core.structures import validate_atoms

    path = Path(path)
    try:
        frames = ase.io.read(path, ":")
    except Exception as exc:  # ase.io raises many kinds (ValueError, KeyError, StopIteration, format errors)
        raise HessdistillError(
            f"{where}: file {str(path)!r}: cannot read seed structures ({type(exc).__name__}: {exc})\n"
            "  fix: give a file ase.io.read reads (extxyz, traj, cif, POSCAR, ...), with a known suffix"
        ) from exc
    if isinstance(frames, Atoms):
        frames = [frames]
    if not frames:
        raise HessdistillError(
            f"{where}: file {str(path)!r} holds no structures\n  fix: give a file of seed structures"
        )
    names, seeds = [], []
    for i, atoms in enumerate(frames):
        # the geometry alone: labels the file may carry (e.g. a student's, on flagged frames) are not used
        seed = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=atoms.pbc)
        if "masses" in atoms.arrays:
            seed.set_masses(atoms.get_masses())
        validate_atoms(seed, index=i, path=path, require_labels=False)
        seeds.append(seed)
        name = atoms.info.get("name")
        names.append(str(name) if name not in (None, "") else f"seed{i}-{atoms.get_chemical_formula()}")
    repeated = {n for n in names if names.count(n) > 1}
    names = [f"{n}-{i}" if n in repeated else n for i, n in enumerate(names)]
    if len(set(names)) != len(names):
        raise HessdistillError(
            f"{where}: file {str(path)!r}: seed names {sorted(n for n in set(names) if names.count(n) > 1)} repeat "
            "after numbering\n  fix: give the seeds distinct info['name'] values"
        )
    return list(zip(names, seeds))


def _sample(path: Path, options: dict, where: str, out: Path):
    from ..data.sampling import SamplingSettings, report_json, sample, settings_from_options

    valid = ["teacher", "dtype", "device"] + [f for f in SamplingSettings.__dataclass_fields__]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise HessdistillError(
            f"{where}.options: unknown sampling option(s) {unknown}\n  fix: remove or rename them; valid: {', '.join(valid)}"
        )
    seeds = seed_structures(path, where)
    teacher_opts = {k: options.pop(k) for k in ("teacher", "dtype", "device") if k in options}
    try:
        settings = settings_from_options(**options)
    except HessdistillError as exc:
        raise HessdistillError(f"{where}.options: {exc}") from exc
    calculator, meta = _teacher_calculator(teacher_opts)
    identity = json.dumps(meta, sort_keys=True, default=str)  # name, version, dtype, device (and adapter options)
    structures, report = sample(calculator, seeds, settings, checkpoint_dir=sampling_dir(out), identity=identity)
    attrs = {
        "sampling_settings": json.dumps(settings.as_dict(), sort_keys=True),
        "sampling_report": report_json(report),
        "sampling_teacher": json.dumps(meta, sort_keys=True),
    }
    return structures, attrs


def sampling_dir(out) -> Path:
    """``<out>.sampling/``: the finished trajectories of a ``sample`` source, kept until the store ``out`` is
    written so that a rerun after a crash computes only the rest."""
    return Path(str(out) + ".sampling")


def prepare_subset(spec: dict, out, *, base_dir=None) -> dict:
    """Build the subset store ``out`` from ``spec`` (see the module docstring); return the report."""
    from ..data.splits import carve_test_from_train, make_splits, write_split_store
    from ..data.subsets import compile_selectors, select

    base_dir = Path(base_dir or ".")
    _check_keys(spec, _TOP_KEYS, "subset")
    if "source" not in spec:
        raise HessdistillError("subset: 'source' is required")
    split = dict(spec.get("split") or {})
    _check_keys(split, _SPLIT_KEYS, "subset.split")
    if "seed" not in split:
        raise HessdistillError("subset.split: 'seed' is required (an integer), so that the split is reproducible")
    selectors = spec.get("selectors") or []
    compile_selectors(selectors, base_dir=base_dir)  # fail on a typo before reading gigabytes

    structures, source_desc, attrs = _read(spec["source"], "subset.source", base_dir, Path(out))
    selected, sel_report = select(structures, selectors, source=source_desc, base_dir=base_dir)
    reports = {"source": sel_report}
    fractions, counts = split.get("fractions"), split.get("counts")
    if fractions is None and counts is None:
        fractions = (
            {"train": 0.8, "val": 0.1, "test": 0.1} if "test_source" not in spec else {"train": 0.85, "val": 0.15}
        )
    names = tuple((fractions or counts).keys()) if isinstance(fractions or counts, dict) else ("train", "val", "test")
    # sampled frames: whole trajectories in one split unless the specification says otherwise (group_by: null)
    group_by = split.get("group_by", "trajectory" if spec["source"]["name"] == "sample" else None)
    splits = make_splits(
        selected,
        fractions=fractions,
        counts=counts,
        seed=int(split["seed"]),
        group_by=group_by,
        names=names,
    )
    if spec.get("test_source"):
        if "test" in splits:
            raise HessdistillError("subset: with a test_source the split fractions/counts must not include 'test'")
        test_all, test_desc, test_attrs = _read(spec["test_source"], "subset.test_source", base_dir, Path(out))
        attrs.update({f"test_{k}": v for k, v in test_attrs.items()})
        splits["test"], reports["test_source"] = select(test_all, selectors, source=test_desc, base_dir=base_dir)
    if split.get("carve_test_from_train"):
        if "test" in splits:
            raise HessdistillError("subset.split: carve_test_from_train needs splits without 'test'")
        splits = carve_test_from_train(splits, seed=int(split["seed"]), group_by=group_by)
    labels = (
        "teacher:" + (spec["source"].get("options") or {}).get("teacher", "chgnet")
        if spec["source"]["name"] in ("builtin", "sample")
        else "dft"
    )
    path = write_split_store(
        out,
        splits,
        seed=int(split["seed"]),
        selectors_report=reports["source"],
        source=source_desc,
        attrs={
            "subset_spec": json.dumps(spec, sort_keys=True),
            "test_selection_report": json.dumps(reports.get("test_source"), sort_keys=True),
            **attrs,
        },
        labels=labels,
        group_by=group_by,
        fractions=fractions,
        counts=counts,
    )
    if sampling_dir(out).exists():  # the store is written: the sampling checkpoints are no longer needed
        shutil.rmtree(sampling_dir(out))
    result = {"store": str(path), "selection": reports, "splits": {k: len(v) for k, v in splits.items()}}
    if "sampling_report" in attrs:  # builtin and sample sources: frames made and dropped, teacher calls
        result["sampling"] = json.loads(attrs["sampling_report"])
    return result


def load_spec(path) -> dict:
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise HessdistillError(f"cannot read subset specification {str(path)!r}: {exc}") from exc
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise HessdistillError(
            f"file {str(path)!r}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc})"
        ) from exc


def run(spec, out, *, base_dir=".", report=None) -> dict:
    """Build the subset store ``out`` from ``spec`` (a mapping, or the path of a YAML/JSON specification); write
    the selection/split report as JSON to ``report`` when given; return the report."""
    if not isinstance(spec, dict):
        spec = load_spec(spec)
    result = prepare_subset(spec, out, base_dir=base_dir)
    if report:
        atomic_write_text(report, json.dumps(result, indent=1, sort_keys=True))
    return result


def snakemake_job(smk, device=None) -> dict:
    """The workflow's ``prepare_subset`` rule: the subset ``smk.params.spec`` into ``smk.output[0]`` with
    ``smk.threads`` torch threads, relative paths from the config's ``data_dir``; return the report.  ``device``
    is not used (a built-in source names its own device in its options)."""
    import torch

    torch.set_num_threads(smk.threads)
    return prepare_subset(smk.params.spec, smk.output[0], base_dir=smk.config.get("data_dir", "."))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hessdistill.jobs.prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("spec", help="subset specification (YAML/JSON)")
    p.add_argument("--out", required=True, help="structure store to write (HDF5)")
    p.add_argument("--report", help="write the selection/split report (JSON) here")
    args = p.parse_args(argv)
    try:
        report = run(args.spec, args.out, base_dir=Path(args.spec).parent, report=args.report)
    except HessdistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sel = report["selection"]["source"]
    print(f"wrote {report['store']}: {report['splits']} (selected {sel['n_selected']} of {sel['n_input']})")
    if "sampling" in report:
        smp = report["sampling"]
        dropped = {k: v for k, v in smp["dropped"].items() if v}
        print(
            f"  sampled {smp['frames_made']} frames with {smp['teacher_calls']} teacher calls; "
            f"guard rails dropped {smp['frames_dropped']}{f' {dropped}' if dropped else ''}"
        )
    for s in sel["selectors"]:
        print(f"  [{s['index']}] {s['selector']}: kept {s['kept']} of {s['seen']}")
        if "spglib_version" in s:  # space_group: how the space groups were found (also in the store's selection_report)
            extra = (
                f", {s['n_materials_kept']} of {s['n_materials']} materials (frame: {s['frame']})"
                if "n_materials" in s
                else ""
            )
            print(
                f"      spglib {s['spglib_version']}, symprec {s['symprec']} Å, angle_tolerance {s['angle_tolerance']}, "
                f"per {s['per']}{extra}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
