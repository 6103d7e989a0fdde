"""Chemical subsets: composable structure selectors declared in config as plain dicts and lists.

A selector spec is a list of single-kind dicts, applied in order (logical AND)::

    [{"contains_elements": ["Y"]}, {"max_atoms": 60}, {"max_force": 20.0}]

``{"any_of": [...]}`` (OR), ``{"all_of": [...]}`` (AND) and ``{"not": {...}}`` compose selectors; a list
anywhere a selector is expected means AND.  Each dict holds exactly one selector kind; that kind's options
may be given beside it (``{"contains_elements": ["Y", "Sc"], "mode": "any"}``) or as a dict value
(``{"contains_elements": {"elements": ["Y", "Sc"], "mode": "any"}}``).  Unknown kinds, unknown options
and wrongly typed values raise :class:`SelectorError` naming the place in the spec (``selectors[2]``) and
listing what is valid, so a typo in a config fails before any data is read (:func:`compile_selectors`).

Kinds (``SELECTORS`` holds the one-line descriptions used in error messages):

* ``contains_elements`` (``mode: all|any``, default ``all``), ``only_elements`` (the structure's elements
  are a subset of the list), ``exclude_elements`` (none of them present).
* ``info_equals: {key, value}``, ``info_in: {key, values}`` on ``atoms.info``; ``spice_group: <name(s)>``
  matches ``info["config_type"]`` or ``info["subset"]`` (MACE-OFF's SPICE files call the group
  ``config_type``), e.g. ``"DES370K Monomers"``, ``"Solvated Amino Acids"``.
* ``id_list: <file>`` (or ``{file, key, sha256}``): keep structures whose ``info[key]`` (default ``mp_id``)
  is in a *frozen* id file: one id per line, ``#`` starts a comment.  This is how the paper's
  "band gap > 5 eV" MPtrj subset is reproduced.  **No selector ever queries the Materials Project API**:
  the official code queried it live (results drift with every database release); instead freeze the
  list once from a dated MP release and record that release in the file's header comment (e.g.
  ``# Materials Project v2023.11.1, summary band_gap >= 5 eV, 2024-05-01``).  The report records the file's
  sha256 (and the number of ids), which the workflow stores in the output's attributes; give
  ``sha256: <hex>`` in the spec to fail when the file changes.
* ``perovskite: true`` (options ``cubic_only``, ``anions``, tolerances, ``symmetry``): ABX3 with
  corner-sharing BX6 octahedra; the rule is documented at :func:`hessdistill.data.perovskite.perovskite_check`.
  A geometric alternative to ``space_group``, not what the paper used.
* ``space_group: {number: 221}`` (or ``{symbol: Pm-3m}``, ``space_group: Pm-3m``, a list of numbers or
  symbols): the space group found by spglib (:mod:`hessdistill.data.spacegroup`).  **The paper's MPtrj
  "perovskites" subset is every frame of every material whose space group is Pm-3m (No. 221), whatever
  its composition** (CsCl-type and Cu3Au-type cubic materials included)::

      {"space_group": {"number": 221}}      # per: material, key: mp_id, frame: lowest_energy, symprec: 0.1

  Options: ``symprec`` (Å, default 0.1: the tolerance the Materials Project assigns space groups with;
  MPtrj frames are relaxation snapshots, slightly distorted from the ideal structure, and spglib's own
  default of 1e-5 Å would find almost none of them cubic), ``angle_tolerance`` (degrees, default -1 =
  spglib's default), ``per: material`` (default: decide once per ``info[key]``, ``key`` default
  ``mp_id``, and keep or drop all frames of the material together) or ``per: frame`` (every frame on its
  own), ``frame: lowest_energy`` (default) or ``last``: which frame of a material is analysed (see
  :class:`_SpaceGroup`; MP's space group is that of the relaxed structure, the end of the relaxation),
  ``missing: error|drop`` (structures without ``info[key]``).  With ``per: material`` the decision is made
  on the whole input, before the other selectors run, so their order does not change which frame
  represents a material.  Structures not periodic in all three directions have no space group (never
  kept).  The report records ``spglib_version``, ``symprec``, ``angle_tolerance``, ``per``, the space
  groups asked for, a histogram of those found, and per material the frame used and its space group
  (``materials: {mp_id: [frame_id, number]}``); the prepared store keeps it in ``selection_report``.
* ``min_atoms`` / ``max_atoms``, ``max_force`` (max per-atom |F| in eV/Å; needs labels),
  ``max_energy_per_atom`` (eV/atom; needs labels), ``neutral`` (total charge 0, from ``info["charge"]``
  or ``info["total_charge"]``; ``missing: error|keep|drop``), ``formula_in`` / ``reduced_formula_in``
  (order-insensitive: ``"SrTiO3"`` equals ``"O3SrTi"``; ``reduced`` divides the counts by their gcd),
  ``periodic: true|false`` (``true``: at least one periodic direction; ``false``: none).

Selectors on ``atoms.info`` (``info_equals``, ``info_in``, ``spice_group``, ``id_list``) raise when a
structure lacks the key (a wrong key name is a config error); pass ``missing: drop`` to drop such
structures instead.  Selectors that need labels raise when a structure has none.

:func:`select` returns the kept structures and a JSON-able report: for each top-level selector its
index, kind, spec, how many structures it saw and how many it kept.  When a selector removes the last
structures, :class:`EmptySelectionError` names it (index and spec), the counts before it and the source.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import numbers as _numbers
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import reduce
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from ..core.errors import HessdistillError, compose_message
from ..core.jsonutil import plain as _jsonable
from ..core.structures import calc_property
from .perovskite import perovskite_check

__all__ = [
    "SELECTORS",
    "SPICE_GROUP_KEYS",
    "EmptySelectionError",
    "Selector",
    "SelectorChain",
    "SelectorError",
    "compile_selectors",
    "read_id_list",
    "select",
    "select_indices",
]

#: the ``atoms.info`` keys ``spice_group`` looks at, in order
SPICE_GROUP_KEYS = ("config_type", "subset")

SELECTORS = {
    "contains_elements": "all (mode: all) or at least one (mode: any) of the listed elements present",
    "only_elements": "every element of the structure is in the list",
    "exclude_elements": "none of the listed elements present",
    "info_equals": "{key: <atoms.info key>, value: <value>}",
    "info_in": "{key: <atoms.info key>, values: [<value>, ...]}",
    "spice_group": "SPICE group name(s), matched against info config_type or subset",
    "id_list": "<file> or {file, key (default mp_id), sha256}: ids frozen in a file, one per line, # comments",
    "perovskite": "true/false or {cubic_only, anions, ...}: ABX3 with corner-sharing BX6 octahedra",
    "space_group": "{number: 221} or {symbol: Pm-3m} (spglib; symprec, angle_tolerance, per: material|frame, key, "
    "frame: lowest_energy|last)",
    "min_atoms": "<int>: at least this many atoms",
    "max_atoms": "<int>: at most this many atoms",
    "max_force": "<eV/Å>: largest per-atom force norm at most this (needs labels)",
    "max_energy_per_atom": "<eV/atom>: energy per atom at most this (needs labels)",
    "neutral": "true/false: total charge (info charge or total_charge) is zero; missing: error|keep|drop",
    "formula_in": "[<formula>, ...]: exact composition (order-insensitive)",
    "reduced_formula_in": "[<formula>, ...]: composition divided by the gcd of its counts",
    "periodic": "true: some periodic direction; false: none",
    "any_of": "[<selector>, ...]: at least one matches",
    "all_of": "[<selector>, ...]: all match",
    "not": "<selector>: does not match",
}


# ====================================================================== errors
class SelectorError(HessdistillError, ValueError):
    """A selector spec is malformed (unknown kind or option, wrong type) or cannot be applied to a structure."""


class EmptySelectionError(HessdistillError, ValueError):
    """The selectors removed every structure; the message names the selector that removed the last ones."""

    def __init__(self, message: str, *, index=None, spec=None, seen=None, source=None, report=None):
        super().__init__(message)
        self.index = index
        self.spec = spec
        self.seen = seen
        self.source = source
        self.report = report


_VALID = "valid selectors: " + ", ".join(SELECTORS)


def _err(where: str, problem: str, fix: str | None = None) -> SelectorError:
    return SelectorError(compose_message(f"{where}: {problem}", fix=fix))


def _short(spec) -> str:
    try:
        return json.dumps(_jsonable(spec), ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError):
        return repr(spec)


# ====================================================================== argument checking
def _is_number(v) -> bool:
    return isinstance(v, (_numbers.Real, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _as_bool(v, where, name) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    raise _err(where, f"{name} must be true or false, got {v!r} ({type(v).__name__})")


def _as_int(v, where, name, minimum=0) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (_numbers.Integral, np.integer)):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise _err(where, f"{name} must be an integer, got {v!r} ({type(v).__name__})")
    v = int(v)
    if v < minimum:
        raise _err(where, f"{name} must be >= {minimum}, got {v}")
    return v


def _as_float(v, where, name, *, positive=False, minimum=None) -> float:
    if not _is_number(v):
        raise _err(where, f"{name} must be a number, got {v!r} ({type(v).__name__})")
    v = float(v)
    if not math.isfinite(v):
        raise _err(where, f"{name} must be finite, got {v}")
    if positive and v <= 0:
        raise _err(where, f"{name} must be > 0, got {v}")
    if minimum is not None and v < minimum:
        raise _err(where, f"{name} must be >= {minimum}, got {v}")
    return v


def _as_choice(v, where, name, choices) -> str:
    if not isinstance(v, str) or v not in choices:
        raise _err(where, f"{name} must be one of {', '.join(choices)}, got {v!r}")
    return v


def _as_list(v, where, name, *, allow_scalar=True) -> list:
    if isinstance(v, (str, bytes)) or not isinstance(v, (Sequence, np.ndarray)):
        if allow_scalar and (isinstance(v, str) or _is_number(v) or isinstance(v, bool)):
            return [v]
        raise _err(where, f"{name} must be a list, got {v!r} ({type(v).__name__})")
    return list(v)


def _as_str_list(v, where, name) -> list[str]:
    items = _as_list(v, where, name)
    if not items:
        raise _err(where, f"{name} is empty")
    for item in items:
        if not isinstance(item, str) or not item:
            raise _err(where, f"{name} must hold non-empty strings, got {item!r}")
    return items


def _element(v, where, name) -> int:
    if isinstance(v, str):
        z = atomic_numbers.get(v)
        if z is None or z == 0:
            close = difflib.get_close_matches(v.capitalize(), chemical_symbols[1:], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _err(where, f"{name}: unknown element symbol {v!r}{hint}", fix="use symbols like 'Y', 'O', 'Cl'")
        return z
    if isinstance(v, (_numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_)) and 1 <= int(v) <= 118:
        return int(v)
    raise _err(where, f"{name}: {v!r} is not an element symbol or atomic number 1..118")


def _elements(v, where, name) -> tuple[int, ...]:
    items = _as_list(v, where, name)
    if not items:
        raise _err(where, f"{name} is empty")
    zs = []
    for item in items:
        z = _element(item, where, name)
        if z not in zs:
            zs.append(z)
    return tuple(zs)


def _scalar(v, where, name):
    v = _jsonable(v)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise _err(where, f"{name} must be a string, number, boolean or null, got {v!r} ({type(v).__name__})")


def _same(a, b) -> bool:
    """Equality of info values that does not confuse booleans with 0/1."""
    if isinstance(a, np.generic):
        a = a.item()
    if isinstance(b, np.generic):
        b = b.item()
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    try:
        return bool(a == b)
    except Exception:
        return False


def _composition(counts: Mapping, where, name) -> frozenset:
    return frozenset((int(z), int(c)) for z, c in counts.items() if c)


def _reduced(comp: frozenset) -> frozenset:
    if not comp:
        return comp
    g = reduce(math.gcd, (c for _, c in comp))
    return frozenset((z, c // g) for z, c in comp)


def _parse_formula(s, where, name) -> frozenset:
    from ase.formula import Formula

    if not isinstance(s, str) or not s.strip():
        raise _err(where, f"{name}: {s!r} is not a formula string")
    try:
        count = Formula(s.strip()).count()
    except Exception as exc:
        raise _err(where, f"{name}: cannot parse formula {s!r} ({exc})") from None
    out: dict[int, int] = {}
    for sym, c in count.items():
        z = _element(sym, where, f"{name} {s!r}")
        out[z] = out.get(z, 0) + int(c)
    if not out:
        raise _err(where, f"{name}: formula {s!r} holds no elements")
    return _composition(out, where, name)


# ====================================================================== frames: one structure
class _AtomsFrame:
    """Selector view of one ``ase.Atoms``."""

    __slots__ = ("_atoms", "index", "source")

    def __init__(self, atoms, index, source):
        if not isinstance(atoms, Atoms):
            raise SelectorError(
                compose_message(
                    f"expected an ase.Atoms, got {type(atoms).__name__}",
                    path=source,
                    structure=index,
                    fix="pass a list of ase.Atoms",
                )
            )
        self._atoms = atoms
        self.index = index
        self.source = source

    @property
    def numbers(self):
        return self._atoms.numbers

    @property
    def n_atoms(self):
        return len(self._atoms)

    @property
    def pbc(self):
        return np.asarray(self._atoms.pbc, dtype=bool)

    @property
    def info(self):
        return self._atoms.info

    def _label(self, name):
        value = calc_property(self._atoms, name, compute=False, path=self.source, where=self.index)
        if value is None:
            value = self._atoms.info.get(name) if name == "energy" else self._atoms.arrays.get(name)
        return value

    def energy(self):
        e = self._label("energy")
        return None if e is None else float(np.asarray(e, dtype=np.float64).reshape(()))

    def forces(self):
        f = self._label("forces")
        return None if f is None else np.asarray(f, dtype=np.float64).reshape(-1, 3)

    def atoms(self) -> Atoms:
        return self._atoms


def _frame_error(frame, problem, fix=None) -> SelectorError:
    return SelectorError(compose_message(problem, path=frame.source, structure=frame.index, fix=fix))


# ====================================================================== selectors
class Selector:
    """One compiled selector: ``keep(frame) -> bool``."""

    kind = ""

    def __init__(self, spec, where):
        self.spec = spec
        self.where = where

    def keep(self, frame) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare(self, n: int, frame_at) -> None:
        """Called once with the whole input (``frame_at(i)`` for ``i < n``) before any ``keep``.

        Selectors that decide per group of structures (``space_group`` with ``per: material``) look at
        the whole input here, so their decision does not depend on the selectors before them.
        """

    def report_extra(self) -> dict:
        return {}

    def __repr__(self):
        return f"<{type(self).__name__} {self.where} {_short(self.spec)}>"


class _Elements(Selector):
    def __init__(self, spec, where, kind, elements, mode="all"):
        super().__init__(spec, where)
        self.kind = kind
        self.elements = elements
        self.zset = frozenset(elements)
        self.mode = mode

    def keep(self, frame):
        present = set(np.unique(frame.numbers).tolist())
        if self.kind == "contains_elements":
            return self.zset <= present if self.mode == "all" else bool(self.zset & present)
        if self.kind == "only_elements":
            return present <= self.zset
        return not (self.zset & present)  # exclude_elements


class _AtomCount(Selector):
    def __init__(self, spec, where, kind, limit):
        super().__init__(spec, where)
        self.kind = kind
        self.limit = limit

    def keep(self, frame):
        n = frame.n_atoms
        return n <= self.limit if self.kind == "max_atoms" else n >= self.limit


_FIX_NEEDS_LABELS = "label the structures first (DFT or teacher), or remove this selector"


class _MaxForce(Selector):
    kind = "max_force"

    def __init__(self, spec, where, limit):
        super().__init__(spec, where)
        self.limit = limit

    def keep(self, frame):
        f = frame.forces()
        if f is None:
            raise _frame_error(
                frame, f"{self.where} max_force needs forces but the structure has none", _FIX_NEEDS_LABELS
            )
        return float(np.sqrt((f * f).sum(axis=1)).max(initial=0.0)) <= self.limit


class _MaxEnergyPerAtom(Selector):
    kind = "max_energy_per_atom"

    def __init__(self, spec, where, limit):
        super().__init__(spec, where)
        self.limit = limit

    def keep(self, frame):
        e = frame.energy()
        if e is None:
            raise _frame_error(
                frame, f"{self.where} max_energy_per_atom needs an energy but the structure has none", _FIX_NEEDS_LABELS
            )
        return e / frame.n_atoms <= self.limit


class _Periodic(Selector):
    kind = "periodic"

    def __init__(self, spec, where, periodic):
        super().__init__(spec, where)
        self.periodic = periodic

    def keep(self, frame):
        return bool(frame.pbc.any()) == self.periodic


class _Info(Selector):
    """info_equals / info_in / spice_group: ``info[key]`` (first key present) in ``values``."""

    def __init__(self, spec, where, kind, keys, values, missing):
        super().__init__(spec, where)
        self.kind = kind
        self.keys = keys
        self.values = values
        self.missing = missing

    def keep(self, frame):
        info = frame.info
        for key in self.keys:
            if key in info:
                value = info[key]
                return any(_same(value, v) for v in self.values)
        if self.missing == "drop":
            return False
        keys = " or ".join(repr(k) for k in self.keys)
        have = sorted(str(k) for k in info)
        raise _frame_error(
            frame,
            f"{self.where} {self.kind}: atoms.info has no key {keys} (it has: {have})",
            "fix the key name in the selector, or add 'missing: drop' to drop such structures",
        )


class _IdList(_Info):
    kind = "id_list"

    def __init__(self, spec, where, key, ids, file, sha256, missing):
        super().__init__(spec, where, "id_list", (key,), (), missing)
        self.ids = ids
        self.file = file
        self.sha256 = sha256

    def keep(self, frame):
        info = frame.info
        if self.keys[0] not in info:
            return super().keep(frame)
        value = info[self.keys[0]]
        if isinstance(value, np.generic):
            value = value.item()
        return str(value) in self.ids

    def report_extra(self):
        return {"file": str(self.file), "sha256": self.sha256, "n_ids": len(self.ids), "key": self.keys[0]}


class _Neutral(Selector):
    kind = "neutral"

    def __init__(self, spec, where, neutral, missing):
        super().__init__(spec, where)
        self.neutral = neutral
        self.missing = missing

    def keep(self, frame):
        info = frame.info
        charge = info.get("charge", info.get("total_charge"))
        if charge is None:
            if self.missing == "error":
                raise _frame_error(
                    frame,
                    f"{self.where} neutral: atoms.info has neither 'charge' nor 'total_charge'",
                    "set atoms.info['charge'] (read_extxyz(charge_key=...)), or add 'missing: keep' "
                    "(treat as neutral) or 'missing: drop'",
                )
            return self.missing == "keep"
        if not _is_number(charge):
            raise _frame_error(frame, f"{self.where} neutral: total charge {charge!r} is not a number")
        return (abs(float(charge)) < 1e-8) == self.neutral


class _Formula(Selector):
    def __init__(self, spec, where, kind, formulas):
        super().__init__(spec, where)
        self.kind = kind
        self.formulas = formulas

    def keep(self, frame):
        comp = _composition(Counter(frame.numbers.tolist()), self.where, self.kind)
        if self.kind == "reduced_formula_in":
            comp = _reduced(comp)
        return comp in self.formulas


class _Perovskite(Selector):
    kind = "perovskite"

    def __init__(self, spec, where, match, options):
        super().__init__(spec, where)
        self.match = match
        self.options = options

    def keep(self, frame):
        ok, _ = perovskite_check(frame.atoms(), **self.options)
        return ok == self.match

    def report_extra(self):
        return {"symmetry": self.options["symmetry"]}


class _SpaceGroup(Selector):
    """``space_group``: spglib's space group of a structure (``per: frame``) or of a material (``per: material``).

    With ``per: material`` every structure is grouped by ``info[key]`` (``mp_id``) over the whole input
    (in :meth:`prepare`), one representative frame per material is analysed, and all frames of the
    material are kept or dropped together.  The representative (``frame``):

    * ``lowest_energy`` (default): the frame with the lowest energy per atom (the energy label; for MPtrj
      the MP2020-corrected total energy, comparable across a material's GGA and GGA+U tasks); ties go to
      the larger ``(calc_id, ionic_step)`` of the MPtrj frame id, then to the later frame.  The end point of
      a relaxation is its lowest-energy frame, and MP reports the space group of the relaxed structure.
    * ``last``: the largest ``(calc_id, ionic_step)`` parsed from ``info["frame_id"]``
      (``"<task id>-<calc id>-<ionic step>"``); when a material has several tasks this does not say which
      task is the final one (ties go to the later frame in the input), hence not the default.
    """

    kind = "space_group"

    def __init__(self, spec, where, numbers, symprec, angle_tolerance, per, key, frame_rule, missing):
        super().__init__(spec, where)
        self.numbers = frozenset(numbers)
        self.targets = tuple(numbers)
        self.symprec = symprec
        self.angle_tolerance = angle_tolerance
        self.per = per
        self.key = key
        self.frame_rule = frame_rule
        self.missing = missing
        self.decisions: dict | None = None  # material -> (frame label, space group number or None)
        self.counts: Counter = Counter()

    def _space_group(self, frame):
        from .spacegroup import space_group

        try:
            return space_group(frame.atoms(), symprec=self.symprec, angle_tolerance=self.angle_tolerance)[0]
        except Exception as exc:  # spglib raises on e.g. a singular cell
            raise _frame_error(
                frame,
                f"{self.where} space_group: spglib failed on this structure ({exc})",
                "drop such structures with a selector before this one",
            ) from None

    def _material(self, frame):
        info = frame.info
        if self.key not in info:
            if self.missing == "drop":
                return None
            have = sorted(str(k) for k in info)
            raise _frame_error(
                frame,
                f"{self.where} space_group (per: material): atoms.info has no key "
                f"{self.key!r} to group frames into materials (it has: {have})",
                "use per: frame for sources without materials, set key: <info key>, "
                "or add 'missing: drop' to drop such structures",
            )
        value = info[self.key]
        return value.item() if isinstance(value, np.generic) else value

    @staticmethod
    def _frame_label(frame):
        info = frame.info
        for k in ("frame_id", "structure_id"):
            if k in info:
                return str(info[k])
        return int(frame.index)

    def _rank(self, frame):
        """Sort key of a candidate representative: the largest wins."""
        from .spacegroup import mptrj_frame_order

        order = mptrj_frame_order(frame.info.get("frame_id"))
        if self.frame_rule == "last":
            if order is None:
                raise _frame_error(
                    frame,
                    f"{self.where} space_group (frame: last): info['frame_id'] "
                    f"{frame.info.get('frame_id')!r} is not an MPtrj frame id "
                    "'<task id>-<calc id>-<ionic step>'",
                    "use frame: lowest_energy (needs energies) for this source",
                )
            return (order, frame.index)
        e = frame.energy()
        if e is None:
            raise _frame_error(
                frame,
                f"{self.where} space_group (frame: lowest_energy) needs an energy to pick "
                "each material's relaxed frame, but the structure has none",
                "label the structures, or use frame: last (MPtrj frame ids)",
            )
        return (-e / max(frame.n_atoms, 1), order or (-1, -1), frame.index)

    def prepare(self, n, frame_at):
        self.counts = Counter()
        if self.per != "material":
            return
        best: dict = {}
        for i in range(n):
            frame = frame_at(i)
            material = self._material(frame)
            if material is None:
                continue
            rank = self._rank(frame)
            if material not in best or rank > best[material][0]:
                best[material] = (rank, i)
        decisions = {}
        for material, (_, i) in best.items():
            frame = frame_at(i)
            decisions[material] = (self._frame_label(frame), self._space_group(frame))
        self.decisions = decisions
        self.counts = Counter(number for _, number in decisions.values())

    def keep(self, frame):
        if self.per == "frame":
            number = self._space_group(frame)
            self.counts[number] += 1
            return number in self.numbers
        if self.decisions is None:
            raise _frame_error(
                frame,
                f"{self.where} space_group (per: material) was asked about a structure before it saw the whole input",
                "apply it through select/select_indices",
            )
        material = self._material(frame)
        if material is None:
            return False
        decision = self.decisions.get(material)
        if decision is None:  # not in the input given to prepare
            raise _frame_error(frame, f"{self.where} space_group: material {material!r} was not in the input")
        return decision[1] in self.numbers

    def report_extra(self):
        from .spacegroup import spglib_version

        out = {
            "space_groups": list(self.targets),
            "symprec": self.symprec,
            "angle_tolerance": self.angle_tolerance,
            "spglib_version": spglib_version(),
            "per": self.per,
            "space_group_counts": {
                ("none" if k is None else str(k)): int(v)
                for k, v in sorted(self.counts.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
            },
        }
        if self.per == "material" and self.decisions is not None:
            out.update(
                {
                    "key": self.key,
                    "frame": self.frame_rule,
                    "n_materials": len(self.decisions),
                    "n_materials_kept": sum(1 for _, num in self.decisions.values() if num in self.numbers),
                    # material -> [frame used, space group number found (null: none)]
                    "materials": {str(m): [f, num] for m, (f, num) in self.decisions.items()},
                }
            )
        return out


def _space_group_selector(jspec, where, a) -> _SpaceGroup:
    try:
        import spglib  # noqa: F401

        from .spacegroup import DEFAULT_ANGLE_TOLERANCE, DEFAULT_SYMPREC, space_group_numbers
    except ImportError:
        raise _err(
            where,
            "space_group needs the spglib package, which is not installed",
            fix="pip install spglib (phonopy, a hessdistill dependency, brings it)",
        ) from None
    if "number" in a and "symbol" in a:
        raise _err(
            where,
            "space_group: give number or symbol, not both",
            fix="e.g. {space_group: {number: 221}} or {space_group: {symbol: Pm-3m}}",
        )
    numbers, symbols = [], []
    if "number" in a:
        for v in _as_list(a["number"], where, "space_group number"):
            n = _as_int(v, where, "space_group number", minimum=1)
            if n > 230:
                raise _err(where, f"space_group number must be 1..230, got {n}", fix="e.g. number: 221 (Pm-3m)")
            numbers.append(n)
    else:
        symbols = _as_str_list(a["symbol"], where, "space_group symbol")
    if not numbers and not symbols:
        raise _err(where, "space_group: the list of space groups is empty")
    targets, unknown = space_group_numbers(numbers, symbols)
    if unknown:
        from .spacegroup import symbol_table

        close = difflib.get_close_matches(unknown[0].replace(" ", ""), list(symbol_table()), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _err(
            where,
            f"space_group: unknown space group symbol {unknown[0]!r}{hint}",
            fix="give the Hermann-Mauguin symbol as spglib writes it (e.g. Pm-3m, Fm-3m, P4mm, Pnma) "
            "or the number (e.g. number: 221)",
        )
    symprec = _as_float(a.get("symprec", DEFAULT_SYMPREC), where, "space_group: symprec (Å)", positive=True)
    angle = a.get("angle_tolerance", DEFAULT_ANGLE_TOLERANCE)
    angle = _as_float(angle, where, "space_group: angle_tolerance")
    if not (angle == -1.0 or 0.0 < angle < 90.0):
        raise _err(
            where,
            f"space_group: angle_tolerance must be in (0, 90) degrees or -1 (spglib's default), got {angle}",
            fix="remove it to use spglib's default, or give e.g. angle_tolerance: 5",
        )
    per = _as_choice(a.get("per", "material"), where, "space_group: per", ("material", "frame"))
    key = a.get("key", "mp_id")
    if not isinstance(key, str) or not key:
        raise _err(where, f"space_group: key must be a non-empty atoms.info key, got {key!r}")
    frame_rule = _as_choice(a.get("frame", "lowest_energy"), where, "space_group: frame", ("lowest_energy", "last"))
    missing = _as_choice(a.get("missing", "error"), where, "space_group: missing", ("error", "drop"))
    if per == "frame" and any(k in a for k in ("key", "frame", "missing")):
        raise _err(
            where,
            f"space_group: {sorted(k for k in ('key', 'frame', 'missing') if k in a)} only apply to per: material",
            fix="remove them, or use per: material",
        )
    return _SpaceGroup(jspec, where, targets, symprec, angle, per, key, frame_rule, missing)


class _AnyOf(Selector):
    kind = "any_of"

    def __init__(self, spec, where, children):
        super().__init__(spec, where)
        self.children = children

    def keep(self, frame):
        return any(c.keep(frame) for c in self.children)

    def prepare(self, n, frame_at):
        for c in self.children:
            c.prepare(n, frame_at)

    def report_extra(self):
        return _children_extra(self.children)


class _AllOf(_AnyOf):
    kind = "all_of"

    def keep(self, frame):
        return all(c.keep(frame) for c in self.children)


class _Not(Selector):
    kind = "not"

    def __init__(self, spec, where, child):
        super().__init__(spec, where)
        self.child = child

    def keep(self, frame):
        return not self.child.keep(frame)

    def prepare(self, n, frame_at):
        self.child.prepare(n, frame_at)

    def report_extra(self):
        return _children_extra([self.child])


def _children_extra(children) -> dict:
    nested = [c.report_extra() for c in children]
    nested = [x for x in nested if x]
    return {"nested": nested} if nested else {}


# ====================================================================== id lists
def read_id_list(path) -> tuple[frozenset, str]:
    """The ids of a frozen id file (one per line, ``#`` starts a comment) and the file's sha256."""
    path = Path(path)
    if not path.is_file():
        raise SelectorError(
            compose_message(
                "id list file does not exist" if not path.exists() else "id list is not a file",
                path=path,
                fix="freeze the id list from a dated Materials Project release into "
                "this file (one id per line), or fix the path",
            )
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SelectorError(compose_message("id list is not UTF-8 text", path=path)) from None
    ids = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.add(line)
    if not ids:
        raise SelectorError(
            compose_message(
                "id list holds no ids (only comments or blank lines)",
                path=path,
                fix="check that the file was written completely",
            )
        )
    return frozenset(ids), hashlib.sha256(data).hexdigest()


# ====================================================================== parsing specs
_OPTIONS = {  # kind -> (primary argument or None, allowed argument names, value may be a dict of arguments)
    "contains_elements": ("elements", {"elements", "mode"}, True),
    "only_elements": ("elements", {"elements"}, True),
    "exclude_elements": ("elements", {"elements"}, True),
    "info_equals": (None, {"key", "value", "missing"}, True),
    "info_in": (None, {"key", "values", "missing"}, True),
    "spice_group": ("groups", {"groups", "keys", "missing"}, True),
    "id_list": ("file", {"file", "key", "sha256", "missing"}, True),
    "perovskite": (
        "match",
        {
            "match",
            "cubic_only",
            "anions",
            "bond_tol",
            "a_site_tol",
            "a_site_coordination",
            "octahedron_angle_tol",
            "link_angle_tol",
            "cubic_length_tol",
            "cubic_angle_tol",
            "symmetry",
            "symprec",
        },
        True,
    ),
    "space_group": (
        "number",
        {"number", "symbol", "symprec", "angle_tolerance", "per", "key", "frame", "missing"},
        True,
    ),
    "min_atoms": ("value", {"value"}, False),
    "max_atoms": ("value", {"value"}, False),
    "max_force": ("value", {"value"}, False),
    "max_energy_per_atom": ("value", {"value"}, False),
    "neutral": ("value", {"value", "missing"}, True),
    "formula_in": ("formulas", {"formulas"}, False),
    "reduced_formula_in": ("formulas", {"formulas"}, False),
    "periodic": ("value", {"value"}, False),
}
_COMPOSITES = ("any_of", "all_of", "not")
assert set(_OPTIONS) | set(_COMPOSITES) == set(SELECTORS)


def _args(kind, value, siblings, where) -> dict:
    primary, allowed, dict_form = _OPTIONS[kind]
    if isinstance(value, Mapping) and dict_form:
        args = {str(k): v for k, v in value.items()}
    elif kind == "space_group" and isinstance(value, str):
        args = {"symbol": value}
    elif primary is None:
        raise _err(where, f"{kind} takes a mapping {SELECTORS[kind]}, got {value!r} ({type(value).__name__})")
    else:
        args = {primary: value}
    for k, v in siblings.items():
        if k in args:
            raise _err(where, f"{kind}: option {k!r} given twice (beside the selector and in its value)")
        args[k] = v
    unknown = sorted(set(args) - allowed)
    if unknown:
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _err(where, f"{kind}: unknown option(s) {unknown}{hint}; valid options: {sorted(allowed)}")
    required = [primary] if primary else sorted(allowed - {"missing"})
    for name in required:
        if name not in args:
            if kind == "space_group":
                if "symbol" not in args:
                    raise _err(
                        where,
                        "space_group: give the space group as number (e.g. 221) or symbol (e.g. Pm-3m)",
                        fix="write {space_group: {number: 221}} or {space_group: {symbol: Pm-3m}}",
                    )
                continue
            if kind in ("perovskite", "neutral") and name in ("match", "value"):
                args[name] = True
                continue
            raise _err(where, f"{kind}: missing {name!r} ({SELECTORS[kind]})")
    return args


def _parse(spec, where, base_dir) -> Selector:
    if isinstance(spec, Selector):
        return spec
    if isinstance(spec, (list, tuple)):
        children = [_parse(s, f"{where}[{i}]", base_dir) for i, s in enumerate(spec)]
        if not children:
            raise _err(where, "an empty list is not a selector")
        return _AllOf(_jsonable(spec), where, children) if len(children) > 1 else children[0]
    if not isinstance(spec, Mapping):
        raise _err(
            where,
            f'a selector must be a mapping like {{"max_atoms": 60}}, got {spec!r} ({type(spec).__name__}); {_VALID}',
        )
    keys = [str(k) for k in spec]
    kinds = [k for k in keys if k in SELECTORS]
    if not kinds:
        unknown = keys[0] if keys else "(empty mapping)"
        close = difflib.get_close_matches(unknown, list(SELECTORS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _err(
            where,
            f"unknown selector {unknown!r}{hint}; {_VALID}",
            fix="check the spelling in the config (one selector kind per mapping)",
        )
    if len(kinds) > 1:
        raise _err(
            where,
            f"one selector per mapping, got {kinds}",
            fix='write them as a list, e.g. [{"' + kinds[0] + '": ...}, {"' + kinds[1] + '": ...}]',
        )
    kind = kinds[0]
    value = spec[kind]
    siblings = {str(k): v for k, v in spec.items() if str(k) != kind}
    jspec = _jsonable(dict(spec))

    if kind in _COMPOSITES:
        if siblings:
            raise _err(where, f"{kind} takes no options, got {sorted(siblings)}")
        if kind == "not":
            return _Not(jspec, where, _parse(value, f"{where}.not", base_dir))
        items = _as_list(value, where, kind, allow_scalar=False)
        if not items:
            raise _err(where, f"{kind} needs at least one selector")
        children = [_parse(s, f"{where}.{kind}[{i}]", base_dir) for i, s in enumerate(items)]
        return (_AnyOf if kind == "any_of" else _AllOf)(jspec, where, children)

    a = _args(kind, value, siblings, where)
    if kind in ("contains_elements", "only_elements", "exclude_elements"):
        mode = _as_choice(a.get("mode", "all"), where, "mode", ("all", "any"))
        return _Elements(jspec, where, kind, _elements(a["elements"], where, kind), mode)
    if kind in ("info_equals", "info_in", "spice_group", "id_list"):
        missing = _as_choice(a.get("missing", "error"), where, "missing", ("error", "drop"))
        if kind == "id_list":
            key = a.get("key", "mp_id")
            if not isinstance(key, str) or not key:
                raise _err(where, f"id_list: key must be a non-empty string, got {key!r}")
            file = a["file"]
            if not isinstance(file, (str, Path)) or not str(file):
                raise _err(where, f"id_list: file must be a path, got {file!r} ({type(file).__name__})")
            file = Path(file)
            if not file.is_absolute() and base_dir is not None:
                file = Path(base_dir) / file
            ids, digest = read_id_list(file)
            expected = a.get("sha256")
            if expected is not None:
                if not isinstance(expected, str) or expected.lower() != digest:
                    raise SelectorError(
                        compose_message(
                            f"{where}: id list sha256 is {digest}, the config expects {expected!r}",
                            path=file,
                            fix="the frozen id list changed: restore the recorded file, or update sha256 deliberately",
                        )
                    )
            return _IdList(jspec, where, key, ids, file, digest, missing)
        if kind == "spice_group":
            groups = _as_str_list(a["groups"], where, "spice_group")
            keys = tuple(_as_str_list(a.get("keys", list(SPICE_GROUP_KEYS)), where, "keys"))
            return _Info(jspec, where, kind, keys, tuple(groups), missing)
        key = a["key"]
        if not isinstance(key, str) or not key:
            raise _err(where, f"{kind}: key must be a non-empty string, got {key!r}")
        if kind == "info_equals":
            values = (_scalar(a["value"], where, "value"),)
        else:
            items = _as_list(a["values"], where, "values", allow_scalar=False)
            if not items:
                raise _err(where, "info_in: values is empty")
            values = tuple(_scalar(v, where, "values") for v in items)
        return _Info(jspec, where, kind, (key,), values, missing)
    if kind in ("min_atoms", "max_atoms"):
        return _AtomCount(jspec, where, kind, _as_int(a["value"], where, kind, minimum=0))
    if kind == "max_force":
        return _MaxForce(jspec, where, _as_float(a["value"], where, kind, minimum=0.0))
    if kind == "max_energy_per_atom":
        return _MaxEnergyPerAtom(jspec, where, _as_float(a["value"], where, kind))
    if kind == "periodic":
        return _Periodic(jspec, where, _as_bool(a["value"], where, kind))
    if kind == "neutral":
        missing = _as_choice(a.get("missing", "error"), where, "missing", ("error", "keep", "drop"))
        return _Neutral(jspec, where, _as_bool(a["value"], where, kind), missing)
    if kind in ("formula_in", "reduced_formula_in"):
        items = _as_list(a["formulas"], where, kind)
        if not items:
            raise _err(where, f"{kind} is empty")
        comps = {_parse_formula(s, where, kind) for s in items}
        if kind == "reduced_formula_in":
            comps = {_reduced(c) for c in comps}
        return _Formula(jspec, where, kind, frozenset(comps))
    if kind == "perovskite":
        return _Perovskite(jspec, where, _as_bool(a.pop("match"), where, "perovskite"), _perovskite_options(a, where))
    if kind == "space_group":
        return _space_group_selector(jspec, where, a)
    raise AssertionError(kind)  # pragma: no cover


def _perovskite_options(a, where) -> dict:
    opts = {}
    if "cubic_only" in a:
        opts["cubic_only"] = _as_bool(a["cubic_only"], where, "cubic_only")
    if "anions" in a:
        opts["anions"] = tuple(chemical_symbols[z] for z in _elements(a["anions"], where, "anions"))
    for name in ("bond_tol", "a_site_tol", "cubic_length_tol", "symprec"):
        if name in a:
            opts[name] = _as_float(a[name], where, name, positive=True)
    for name in ("octahedron_angle_tol", "link_angle_tol", "cubic_angle_tol"):
        if name in a:
            opts[name] = _as_float(a[name], where, name, positive=True)
            if opts[name] >= 90:
                raise _err(where, f"{name} must be below 90 degrees, got {opts[name]}")
    if "a_site_coordination" in a:
        lim = _as_list(a["a_site_coordination"], where, "a_site_coordination", allow_scalar=False)
        if len(lim) != 2:
            raise _err(where, f"a_site_coordination must be [min, max], got {lim!r}")
        lo, hi = (_as_int(x, where, "a_site_coordination", minimum=1) for x in lim)
        if lo > hi:
            raise _err(where, f"a_site_coordination: min {lo} > max {hi}")
        opts["a_site_coordination"] = (lo, hi)
    symmetry = _as_choice(a.get("symmetry", "geometric"), where, "symmetry", ("geometric", "spglib", "auto"))
    if symmetry != "geometric":
        try:
            import spglib  # noqa: F401

            symmetry = "spglib"
        except ImportError:
            if symmetry == "spglib":
                raise _err(
                    where,
                    "perovskite: symmetry 'spglib' needs the spglib package, which is not installed",
                    fix="pip install spglib, or use symmetry: geometric (or auto)",
                ) from None
            symmetry = "geometric"
    opts["symmetry"] = symmetry
    return opts


# ====================================================================== chains and running them
class SelectorChain:
    """Compiled top-level selectors, applied in order (AND)."""

    def __init__(self, selectors: list[Selector], spec):
        self.selectors = selectors
        self.spec = spec

    def __len__(self):
        return len(self.selectors)

    def __iter__(self):
        return iter(self.selectors)

    def __repr__(self):
        return f"<SelectorChain {_short(self.spec)}>"


def compile_selectors(spec, *, base_dir=None) -> SelectorChain:
    """Check and compile a selector spec (list of mappings, one mapping, or None/[] for "keep everything").

    Relative ``id_list`` files are resolved against ``base_dir`` (e.g. the config's folder), else the
    working directory.  Raises :class:`SelectorError` for any malformed spec, before data is read.
    """
    if isinstance(spec, SelectorChain):
        return spec
    if spec is None:
        items = []
    elif isinstance(spec, Mapping) or isinstance(spec, Selector):
        items = [spec]
    elif isinstance(spec, (list, tuple)):
        items = list(spec)
    else:
        raise _err("selectors", f"expected a list of selector mappings, got {spec!r} ({type(spec).__name__}); {_VALID}")
    selectors = [_parse(s, f"selectors[{i}]", base_dir) for i, s in enumerate(items)]
    return SelectorChain(selectors, _jsonable([s.spec if isinstance(s, Selector) else s for s in items]))


def _run(chain: SelectorChain, n: int, frame_at, *, source=None, allow_empty=False):
    report = {"source": None if source is None else str(source), "n_input": n, "n_selected": n, "selectors": []}
    src = f" from {str(source)!r}" if source is not None else ""
    if n == 0 and not allow_empty:
        raise EmptySelectionError(
            f"selection{src} is empty: the input holds no structures", source=source, report=report
        )
    idx = np.arange(n, dtype=np.int64)
    for sel in chain.selectors:
        sel.prepare(n, frame_at)
    for k, sel in enumerate(chain.selectors):
        seen = len(idx)
        keep = np.fromiter((sel.keep(frame_at(int(i))) for i in idx), dtype=bool, count=seen)
        idx = idx[keep]
        entry = {"index": k, "selector": sel.kind, "spec": sel.spec, "seen": seen, "kept": int(len(idx))}
        entry.update(sel.report_extra())
        report["selectors"].append(entry)
        if seen and not len(idx) and not allow_empty:
            history = " -> ".join(
                [f"input {n}"] + [f"[{e['index']}] {e['selector']} {e['kept']}" for e in report["selectors"][:-1]]
            )
            report["n_selected"] = 0
            raise EmptySelectionError(
                compose_message(
                    f"selection{src} is empty: selectors[{k}] = {_short(sel.spec)} removed the last {seen} "
                    f"structure(s) (saw {seen}, kept 0); counts before it: {history}",
                    fix="loosen or remove that selector, or check that the source holds the structures you "
                    "expect (e.g. the right info key, element or id list)",
                ),
                index=k,
                spec=sel.spec,
                seen=seen,
                source=source,
                report=report,
            )
    report["n_selected"] = int(len(idx))
    return idx, report


def select_indices(atoms_list, selectors, *, source=None, base_dir=None, allow_empty=False):
    """Like :func:`select`, but return the kept positions (ascending) instead of the structures."""
    chain = compile_selectors(selectors, base_dir=base_dir)
    if isinstance(atoms_list, Atoms):
        raise TypeError("select takes a list of ase.Atoms, not a single Atoms (wrap it in a list)")
    atoms_list = list(atoms_list)
    idx, report = _run(
        chain, len(atoms_list), lambda i: _AtomsFrame(atoms_list[i], i, source), source=source, allow_empty=allow_empty
    )
    return idx.tolist(), report


def select(atoms_list, selectors, *, source=None, base_dir=None, allow_empty=False):
    """Apply ``selectors`` in order; return ``(selected, report)``.

    ``selected`` holds the kept ``ase.Atoms`` themselves (not copies) in input order.  ``report`` is a
    JSON-able dict: ``source``, ``n_input``, ``n_selected`` and ``selectors``, one entry per top-level
    selector with ``index``, ``selector`` (kind), ``spec``, ``seen`` and ``kept`` (``id_list`` adds
    ``file``, ``sha256``, ``n_ids``; ``perovskite`` the ``symmetry`` method; ``space_group`` spglib's version,
    the tolerances and the frame used per material).  Raises
    :class:`EmptySelectionError` when nothing is left (unless ``allow_empty``) and
    :class:`SelectorError` for a malformed spec or a structure a selector cannot judge.
    """
    atoms_list = list(atoms_list) if not isinstance(atoms_list, Atoms) else atoms_list
    idx, report = select_indices(atoms_list, selectors, source=source, base_dir=base_dir, allow_empty=allow_empty)
    return [atoms_list[i] for i in idx], report
