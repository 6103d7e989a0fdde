"""Seeded, reproducible train/val/test splits and the split store that records how they were made.

The paper's protocols (official code: unseeded ``random.shuffle``; here everything takes a seed):

* SPICE: the MACE-OFF train file is split 85/15 train/val, the test split is MACE-OFF's test file::

      make_splits(train_pool, fractions={"train": 0.85, "val": 0.15}, seed=0)

* MPtrj: per frame, 85/15 train/val, then a test split of |val| frames carved out of train (so about
  70/15/15); in a subset specification
  ``split: {fractions: {train: 0.85, val: 0.15}, seed: 0, carve_test_from_train: true}``::

      tv = make_splits(frames, fractions={"train": 0.85, "val": 0.15}, seed=0)
      carve_test_from_train(tv, seed=0)

  Grouping by material (``group_by: mp_id``) is the leak-free option: the frames of one MPtrj material are
  snapshots of the same relaxation trajectory and nearly duplicate each other, so a per-frame split puts
  almost the same structure in train and in val/test and makes test errors look better than they are on
  unseen materials; with ``group_by`` every material lies whole in one split.

Rules common to all functions here:

* Randomness comes only from ``numpy.random.default_rng(seed)``; the same input (same order) and seed
  give the same splits.  Each split lists its structures in input order (a split is a subset, not a
  permutation), so written stores are stable and easy to diff.
* Sizes from fractions use the largest-remainder method: split k gets ``floor(f_k * n)`` structures and
  the ``n - sum(floor)`` left over go one each to the splits with the largest fractional parts (ties:
  the split listed first), so the sizes always sum to ``n``.  Fractions must sum to 1 unless one value
  is ``"rest"`` (everything left).  Counts are exact; ``"rest"`` takes what the others leave, and
  without ``"rest"`` structures beyond the sum of the counts are left out (subsampling).
* ``group_by`` (an ``atoms.info`` key such as ``mp_id``, ``smiles`` or ``molecule``) keeps every group
  whole in one split, so frames of one material or molecule never leak across splits.  Groups are
  shuffled and assigned greedily: each goes to the split, among those still below their target size
  (in structures), that it fits into without overshooting, preferring the least-filled one relative to
  its target; when it fits nowhere it goes to the least-filled split still below target; when every
  target is met (counts without ``"rest"``) the remaining groups are left out.  Sizes are therefore
  only approximately the requested ones; :func:`split_report` records the real ones.
* A split that was asked for structures but got none raises :class:`SplitError` (``allow_empty=True``
  to accept it).
"""

from __future__ import annotations

import math
import numbers as _numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from ..core.errors import HessdistillError, compose_message
from ..core.jsonutil import plain as _jsonable
from .store import write_structures

__all__ = [
    "DEFAULT_NAMES",
    "SplitError",
    "carve_test_from_train",
    "make_splits",
    "split_indices",
    "split_report",
    "split_sizes",
    "write_split_store",
]

DEFAULT_NAMES = ("train", "val", "test")
REST = "rest"


class SplitError(HessdistillError, ValueError):
    """A split request cannot be met (bad fractions/counts, too few structures or groups, missing group key)."""


def _err(problem, fix=None, *, structure=None, path=None) -> SplitError:
    return SplitError(compose_message(problem, structure=structure, path=path, fix=fix))


def _check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (_numbers.Integral, np.integer)) or int(seed) < 0:
        raise _err(
            f"seed must be a non-negative integer, got {seed!r}",
            "give an explicit seed (e.g. seed=0) so that the splits can be reproduced",
        )
    return int(seed)


# ====================================================================== sizes
def _plan(fractions, counts, names) -> tuple[str, list]:
    if (fractions is None) == (counts is None):
        raise _err(
            "give exactly one of fractions= or counts=",
            "e.g. fractions={'train': 0.85, 'val': 0.15} or counts={'train': 500, 'val': 50, 'test': 'rest'}",
        )
    mode = "fractions" if fractions is not None else "counts"
    spec = fractions if fractions is not None else counts
    if isinstance(spec, Mapping):
        items = [(k, v) for k, v in spec.items()]
    elif isinstance(spec, Sequence) and not isinstance(spec, str):
        if len(spec) > len(names):
            raise _err(
                f"{mode} has {len(spec)} entries but only {len(names)} names {list(names)}",
                "pass names=... or give a mapping split name -> value",
            )
        items = list(zip(names, spec))
    else:
        raise _err(f"{mode} must be a mapping split name -> value (or a list matched to names), got {spec!r}")
    if not items:
        raise _err(f"{mode} is empty")
    seen = set()
    n_rest = 0
    out = []
    for name, value in items:
        if not isinstance(name, str) or not name or "/" in name:
            raise _err(f"split names must be non-empty strings without '/', got {name!r}")
        if name in seen:
            raise _err(f"split {name!r} given twice")
        seen.add(name)
        if isinstance(value, str):
            if value != REST:
                raise _err(f"{mode}[{name!r}] = {value!r}: the only string allowed is {REST!r}")
            n_rest += 1
        elif mode == "fractions":
            if (
                isinstance(value, (bool, np.bool_))
                or not isinstance(value, (_numbers.Real, np.floating, np.integer))
                or not math.isfinite(float(value))
                or not 0.0 <= float(value) <= 1.0
            ):
                raise _err(f"fractions[{name!r}] = {value!r} must be a number in [0, 1] or {REST!r}")
            value = float(value)
        else:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if (
                isinstance(value, (bool, np.bool_))
                or not isinstance(value, (_numbers.Integral, np.integer))
                or value < 0
            ):
                raise _err(f"counts[{name!r}] = {value!r} must be a non-negative integer or {REST!r}")
            value = int(value)
        out.append((name, value))
    if n_rest > 1:
        raise _err(f"only one split may be {REST!r}")
    if mode == "fractions":
        total = sum(v for _, v in out if v != REST)
        if n_rest == 0 and abs(total - 1.0) > 1e-6:
            raise _err(
                f"fractions sum to {total:g}, not 1: {dict(out)}",
                f"make them sum to 1, or give one split {REST!r}; use counts= to subsample",
            )
        if total > 1.0 + 1e-6:
            raise _err(f"fractions sum to {total:g} > 1: {dict(out)}")
    return mode, out


def _largest_remainder(quotas: list[float], n: int) -> list[int]:
    floors = [int(math.floor(q + 1e-9)) for q in quotas]
    left = n - sum(floors)
    # fractional parts rounded so that float noise (0.15 * 10 = 1.5000000000000002) cannot break a tie
    order = sorted(range(len(quotas)), key=lambda k: (-round(quotas[k] - floors[k], 9), k))
    for k in order[: max(left, 0)]:
        floors[k] += 1
    return floors


def split_sizes(n: int, *, fractions=None, counts=None, names=DEFAULT_NAMES) -> dict[str, int]:
    """Target sizes (in structures) of each split for ``n`` structures; see the module doc for rounding."""
    mode, plan = _plan(fractions, counts, names)
    if mode == "fractions":
        fixed = sum(v for _, v in plan if v != REST)
        quotas = [n * ((1.0 - fixed) if v == REST else v) for _, v in plan]
        quotas = [max(q, 0.0) for q in quotas]
        sizes = _largest_remainder(quotas, n)
    else:
        fixed = sum(v for _, v in plan if v != REST)
        if fixed > n:
            raise _err(
                f"counts {dict(plan)} ask for {fixed} structures but only {n} are available",
                "lower the counts, or use 'rest' for one split",
            )
        sizes = [(n - fixed) if v == REST else v for _, v in plan]
    return {name: int(s) for (name, _), s in zip(plan, sizes)}


# ====================================================================== groups
def _info_value(atoms, key, index):
    if not isinstance(atoms, Atoms):
        raise _err(f"group_by needs ase.Atoms, got {type(atoms).__name__}", structure=index)
    if key not in atoms.info:
        raise _err(
            f"atoms.info has no group key {key!r} (it has: {sorted(map(str, atoms.info))})",
            structure=index,
            fix="set atoms.info[key] for every structure, or choose another group_by key",
        )
    value = atoms.info[key]
    if isinstance(value, np.generic):
        value = value.item()
    try:
        hash(value)
    except TypeError:
        raise _err(f"group key {key!r} has an unhashable value {value!r}", structure=index) from None
    return value


def _group_labels(atoms_list, group_by, groups):
    if groups is not None and group_by is not None:
        raise _err("give group_by= (an info key) or groups= (one label per structure), not both")
    if groups is not None:
        groups = list(groups)
        if len(groups) != len(atoms_list):
            raise _err(f"groups has {len(groups)} labels for {len(atoms_list)} structures")
        return [g.item() if isinstance(g, np.generic) else g for g in groups]
    if group_by is None:
        return None
    if not isinstance(group_by, str) or not group_by:
        raise _err(f"group_by must be an atoms.info key (a string), got {group_by!r}")
    return [_info_value(a, group_by, i) for i, a in enumerate(atoms_list)]


def _grouped_members(labels) -> list[list[int]]:
    """Member positions of each group, groups in order of first appearance."""
    where: dict = {}
    members: list[list[int]] = []
    for i, g in enumerate(labels):
        k = where.get(g)
        if k is None:
            where[g] = k = len(members)
            members.append([])
        members[k].append(i)
    return members


# ====================================================================== splitting
def split_indices(
    items,
    *,
    fractions=None,
    counts=None,
    seed,
    group_by=None,
    groups=None,
    names=DEFAULT_NAMES,
    allow_empty: bool = False,
) -> dict[str, list[int]]:
    """Positions of the structures in each split (ascending); ``items`` is a list of Atoms or a count.

    ``groups`` gives one group label per structure directly (instead of ``group_by``, e.g. when the
    labels come from a store).  See :func:`make_splits` and the module doc.
    """
    seed = _check_seed(seed)
    if isinstance(items, Atoms):
        raise TypeError("pass a list of ase.Atoms, not a single Atoms")
    if isinstance(items, (_numbers.Integral, np.integer)) and not isinstance(items, bool):
        n = int(items)
        if group_by is not None:
            raise _err("group_by needs the structures, not just their number (or pass groups=)")
        atoms_list = [None] * n
    else:
        atoms_list = list(items)
        n = len(atoms_list)
    if n == 0 and not allow_empty:
        raise _err("nothing to split: the input holds no structures")
    targets = split_sizes(n, fractions=fractions, counts=counts, names=names)
    rng = np.random.default_rng(seed)
    labels = _group_labels(atoms_list, group_by, groups)
    out: dict[str, list[int]] = {}
    if labels is None:
        perm = rng.permutation(n)
        start = 0
        for name, size in targets.items():
            out[name] = sorted(int(i) for i in perm[start : start + size])
            start += size
    else:
        members = _grouped_members(labels)
        order = rng.permutation(len(members))
        names_ = list(targets)
        filled = {k: 0 for k in names_}
        assigned: dict[str, list[int]] = {k: [] for k in names_}
        for g in order:
            size = len(members[g])
            open_ = [k for k in names_ if filled[k] < targets[k]]
            if not open_:
                break  # counts without 'rest': the remaining groups are left out
            fits = [k for k in open_ if filled[k] + size <= targets[k]]
            pool = fits or open_
            best = min(pool, key=lambda k: (filled[k] / targets[k], names_.index(k)))
            assigned[best].extend(members[g])
            filled[best] += size
        out = {k: sorted(v) for k, v in assigned.items()}
    if not allow_empty:
        for name, size in targets.items():
            if size > 0 and not out[name]:
                what = f"{len(_grouped_members(labels))} groups" if labels is not None else f"{n} structures"
                raise _err(
                    f"split {name!r} was asked for {size} structure(s) but got none ({what}, targets {targets})",
                    "use more structures/groups, larger fractions, or pass allow_empty=True",
                )
    return out


def make_splits(
    atoms_list, *, fractions=None, counts=None, seed, group_by=None, names=DEFAULT_NAMES, allow_empty: bool = False
) -> dict[str, list[Atoms]]:
    """Split structures into named splits (``{"train": [...], "val": [...], ...}``), reproducibly.

    ``fractions`` (e.g. ``{"train": 0.85, "val": 0.15}``) or ``counts`` (e.g. ``{"train": 500, "val": 50,
    "test": "rest"}``); a list instead of a mapping is matched to ``names``.  ``seed`` is required.
    ``group_by``: an ``atoms.info`` key whose groups are never split (fractions then hold approximately).
    The returned lists hold the input ``Atoms`` themselves (not copies), each in input order; structures
    beyond the counts (no ``"rest"``) are left out.
    """
    atoms_list = list(atoms_list) if not isinstance(atoms_list, Atoms) else atoms_list
    idx = split_indices(
        atoms_list,
        fractions=fractions,
        counts=counts,
        seed=seed,
        group_by=group_by,
        names=names,
        allow_empty=allow_empty,
    )
    return {name: [atoms_list[i] for i in positions] for name, positions in idx.items()}


def carve_test_from_train(
    splits: Mapping, *, seed, size=None, group_by=None, train: str = "train", val: str = "val", test: str = "test"
) -> dict[str, list]:
    """The paper's MPtrj protocol: move a random test split of ``size`` (default ``len(splits[val])``) out of train.

    Returns a new dict (the input is not modified): the same splits with ``train`` reduced and ``test``
    added after ``val``.  With ``group_by`` whole groups are moved (shuffled; a group is taken when it
    still fits), so the test split may fall slightly short of ``size``.
    """
    seed = _check_seed(seed)
    if not isinstance(splits, Mapping):
        raise _err(f"splits must be a mapping split name -> list of structures, got {type(splits).__name__}")
    if train not in splits:
        raise _err(f"no {train!r} split to carve from (splits: {list(splits)})")
    if splits.get(test):
        raise _err(
            f"split {test!r} already exists with {len(splits[test])} structures",
            "carve only from a train/val pair, or choose another test= name",
        )
    if size is None:
        if val not in splits:
            raise _err(f"no {val!r} split to take the test size from (splits: {list(splits)})", "pass size=...")
        size = len(splits[val])
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (_numbers.Integral, np.integer)) or size < 1:
        raise _err(f"test size must be a positive integer, got {size!r}")
    size = int(size)
    pool = list(splits[train])
    if size >= len(pool):
        raise _err(f"cannot carve {size} test structures from a train split of {len(pool)} (train would be empty)")
    rng = np.random.default_rng(seed)
    if group_by is None:
        chosen = set(int(i) for i in rng.permutation(len(pool))[:size])
    else:
        members = _grouped_members(_group_labels(pool, group_by, None))
        chosen = set()
        for g in rng.permutation(len(members)):
            if len(chosen) + len(members[g]) <= size:
                chosen.update(members[g])
            if len(chosen) == size:
                break
        if not chosen:
            raise _err(f"no {group_by!r} group of train fits into a test split of {size} structures")
        if len(chosen) == len(pool):
            raise _err("carving would leave the train split empty")
    new_train = [a for i, a in enumerate(pool) if i not in chosen]
    new_test = [a for i, a in enumerate(pool) if i in chosen]
    out: dict[str, list] = {}
    for name, items in splits.items():
        if name == test:
            continue
        out[name] = new_train if name == train else list(items)
        if name == val:
            out[test] = new_test
    if test not in out:
        out[test] = new_test
    return out


# ====================================================================== reporting and writing


def split_report(splits: Mapping, *, seed, group_by=None, fractions=None, counts=None) -> dict:
    """A JSON-able summary: per split the number of structures, atoms and (with ``group_by``) groups.

    Also the seed, the request (``fractions``/``counts`` when given), the totals and, with ``group_by``,
    ``groups_in_several_splits`` (0 means no leakage).
    """
    seed = _check_seed(seed)
    total_structures = sum(len(v) for v in splits.values())
    report = {"seed": seed, "group_by": group_by, "n_structures": total_structures, "n_atoms": 0, "splits": {}}
    if fractions is not None:
        report["fractions"] = _jsonable(fractions)
    if counts is not None:
        report["counts"] = _jsonable(counts)
    where_group: dict = {}
    for name, items in splits.items():
        items = list(items)
        n_atoms = sum(len(a) for a in items)
        entry = {
            "n_structures": len(items),
            "n_atoms": int(n_atoms),
            "fraction": round(len(items) / total_structures, 6) if total_structures else 0.0,
        }
        if group_by is not None:
            labels = _group_labels(items, group_by, None)
            for g in set(labels):
                where_group.setdefault(g, set()).add(name)
            entry["n_groups"] = len(set(labels))
        report["splits"][str(name)] = entry
        report["n_atoms"] += int(n_atoms)
    if group_by is not None:
        report["n_groups"] = len(where_group)
        report["groups_in_several_splits"] = sum(1 for s in where_group.values() if len(s) > 1)
    return report


_SPLIT_ATTRS = ("split_seed", "split_report", "source", "selectors", "selection_report")


def write_split_store(
    path,
    splits: Mapping,
    *,
    seed,
    selectors_report=None,
    source=None,
    attrs=None,
    labels: str = "dft",
    require_labels: bool = True,
    group_by=None,
    fractions=None,
    counts=None,
) -> Path:
    """Write ``splits`` with :func:`~hessdistill.data.write_structures`, recording how they were made.

    File attributes added (as canonical JSON where structured): ``split_seed``, ``split_report``
    (:func:`split_report`), ``source`` (when given), ``selectors`` (the selector specs, in order) and
    ``selection_report`` (the report of :func:`~hessdistill.data.subsets.select`, when given), besides the
    caller's ``attrs``.  No timestamps: the same splits, seed and arguments give a byte-identical file.
    """
    seed = _check_seed(seed)
    if not isinstance(splits, Mapping):
        raise _err(f"splits must be a mapping split name -> list of ase.Atoms, got {type(splits).__name__}")
    extra = dict(attrs or {})
    clash = sorted(set(extra) & set(_SPLIT_ATTRS))
    if clash:
        raise ValueError(f"attrs may not set {clash}: write_split_store records them itself")
    own = {
        "split_seed": seed,
        "split_report": split_report(splits, seed=seed, group_by=group_by, fractions=fractions, counts=counts),
    }
    if source is not None:
        own["source"] = str(source)
    if selectors_report is not None:
        if not isinstance(selectors_report, Mapping) or "selectors" not in selectors_report:
            raise TypeError("selectors_report must be the report dict returned by hessdistill.data.subsets.select")
        own["selectors"] = _jsonable([e.get("spec") for e in selectors_report["selectors"]])
        own["selection_report"] = _jsonable(selectors_report)
    return write_structures(
        path,
        {name: list(items) for name, items in splits.items()},
        attrs={**extra, **own},
        labels=labels,
        require_labels=require_labels,
    )
