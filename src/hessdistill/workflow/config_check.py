"""Checks of the workflow config at Snakemake start, with short messages that name the config key and a fix.

The Snakefile (rules/common.smk) calls :func:`check_workflow_config`, which

1. turns ``--config`` strings into the types the schema asks for (:func:`coerce_cli_values`; Snakemake passes
   ``use_gpu=true`` as the string ``'true'``);
2. validates against ``schemas/config.schema.yaml`` (:func:`schema_problems`): types, ranges, unknown keys,
   and the runs' ``subset_overrides`` and ``evaluation.subset_protocol`` entries against the schema of what they
   override;
3. fills the schema's defaults, exactly as ``snakemake.utils.validate`` does (:func:`fill_defaults`);
4. checks what the schema cannot know (:func:`semantic_problems`) against the library's own registries:
   teacher names, student architectures and their hyper-parameters, training options, loss weights, selectors,
   generator and reader options, subset names, Hessian rows.

Every problem reads ``config key 'teachers.chgnet.rows': <problem>`` followed by a ``  fix: <how>`` line;
:class:`ConfigError` carries the first few.  Checks that need a package missing where Snakemake runs (e.g.
torch on a login node) are skipped there with a note; the jobs still check their own inputs.
"""

from __future__ import annotations

import ast
import copy
import difflib
import importlib
import inspect
import math
import os
import re
import sys
from pathlib import Path

from ..core.errors import HessdistillError
from .params import RUN_WORKFLOW_KEYS, combos, disagreement_partners, evaluation_protocol, run_config

#: problems shown in a ConfigError (the rest are counted)
MAX_MESSAGES = 10
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_DEVICE = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")
_DEVICE_FIX = "use cpu, cuda, cuda:<index> or auto"
_SPLITS = ("train", "val", "test")
_DTYPES = ("float32", "float64")
_REGISTRY_ARGS = {"self", "model", "kind", "device", "dtype"}
#: modules whose checks were skipped because they cannot be imported here -> the import error
_SKIPPED: dict[str, str] = {}


class ConfigError(HessdistillError, ValueError):
    """The workflow config holds invalid values; the message lists them (config key, problem, fix)."""


# ====================================================================== small helpers
def _msg(key: str, problem: str, fix: str | None = None) -> str:
    return f"config key '{key}': {problem}" + (f"\n  fix: {fix}" if fix else "")


def _dotted(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _show(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _did_you_mean(name, choices) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _unknown_key(key: str, name, valid, what: str = "key") -> str:
    return _msg(
        key,
        f"unknown {what} {name!r}{_did_you_mean(name, valid)}",
        f"remove or rename it; valid: {', '.join(map(str, valid))}",
    )


def _bad_choice(key: str, value, valid, what: str = "value") -> str:
    return _msg(
        key, f"unknown {what} {_show(value)}{_did_you_mean(value, valid)}", f"use one of: {', '.join(map(str, valid))}"
    )


def _optional(module: str):
    """The module, or None where it cannot be imported here (its checks are then left to the jobs)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        _SKIPPED.setdefault(module, str(exc))
        return None


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def load_schema(path) -> dict:
    """The config schema (YAML or JSON) at ``path``."""
    import yaml

    with open(path) as f:
        return yaml.safe_load(f)


def _as_schema(schema) -> dict:
    return schema if isinstance(schema, dict) else load_schema(schema)


def _resolve(sub, root: dict) -> dict:
    """``sub`` with a local ``$ref`` (``#/$defs/x``) replaced by its target; sibling keywords are kept."""
    while isinstance(sub, dict) and isinstance(sub.get("$ref"), str) and sub["$ref"].startswith("#/"):
        target = root
        for part in sub["$ref"][2:].split("/"):
            target = target[part]
        sub = {**target, **{k: v for k, v in sub.items() if k != "$ref"}}
    return sub if isinstance(sub, dict) else {}


# ====================================================================== --config values
def coerce_cli_values(config: dict, schema) -> None:
    """Convert ``--config`` strings in place where the schema asks for another type: booleans ('true', 'False',
    'yes', 'off', '1', ... and the integers 0/1), integers, numbers and null; follows ``properties``,
    ``additionalProperties`` schemas, ``items`` and local ``$ref``."""
    root = _as_schema(schema)
    _coerce_children(config, root, root)


def _coerce_children(obj, sub, root) -> None:
    sub = _resolve(sub, root)
    if isinstance(obj, dict):
        props, extra = sub.get("properties", {}), sub.get("additionalProperties")
        for k in list(obj):
            child = props.get(k, extra if isinstance(extra, dict) else None)
            if child is not None:
                obj[k] = _coerce_value(obj[k], child, root)
    elif isinstance(obj, list) and isinstance(sub.get("items"), dict):
        obj[:] = [_coerce_value(v, sub["items"], root) for v in obj]


def _schema_types(sub, root) -> tuple[set, list]:
    """(type names, const/enum values) a subschema accepts, including its anyOf/oneOf branches."""
    sub = _resolve(sub, root)
    types = {sub["type"]} if isinstance(sub.get("type"), str) else set(sub.get("type") or ())
    values = ([sub["const"]] if "const" in sub else []) + list(sub.get("enum") or ())
    for branch in sub.get("anyOf", []) + sub.get("oneOf", []):
        t, v = _schema_types(branch, root)
        types |= t
        values += v
    return types, values


def _coerce_value(value, sub, root):
    types, values = _schema_types(sub, root)
    if isinstance(value, str) and "string" not in types and value not in values:
        low = value.strip().lower()
        if "boolean" in types and low in _TRUE + _FALSE:
            return low in _TRUE
        if types & {"integer", "number"} and re.fullmatch(r"[+-]?\d+", low):
            return int(low)
        if "number" in types:
            try:
                number = float(low)
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number
        if "null" in types and low in ("null", "none", "~"):
            return None
    elif type(value) is int and value in (0, 1) and types == {"boolean"}:
        return bool(value)
    _coerce_children(value, sub, root)
    return value


# ====================================================================== the schema
_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _describe(sub, root) -> str:
    """What a subschema accepts, in words: "an integer >= 1 or 'full'"."""
    sub = _resolve(sub, root)
    if "const" in sub:
        return _show(sub["const"])
    if "enum" in sub:
        return "one of " + ", ".join(_show(v) for v in sub["enum"])
    branches = sub.get("anyOf") or sub.get("oneOf")
    if branches:
        return " or ".join(_describe(b, root) for b in branches)
    types = [sub["type"]] if isinstance(sub.get("type"), str) else list(sub.get("type") or ())
    text = " or ".join(_TYPE_WORDS.get(t, t) for t in types) or "a value"
    bounds = [
        f"{op} {sub[k]}"
        for k, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))
        if k in sub
    ]
    if "minItems" in sub:
        bounds.append(f"with at least {sub['minItems']} item(s)")
    if "pattern" in sub:
        bounds.append(f"matching {sub['pattern']}")
    return text + (" " + " and ".join(bounds) if bounds else "")


def _with_description(text: str, sub) -> str:
    desc = sub.get("description") if isinstance(sub, dict) else None
    return f"{text} ({' '.join(desc.split())})" if desc else text


def _error_messages(error, root, prefix=()) -> list[tuple[tuple, str]]:
    """(key path, message) pairs for one jsonschema ValidationError."""
    path = tuple(prefix) + tuple(error.absolute_path)
    sub, kind, value = error.schema if isinstance(error.schema, dict) else {}, error.validator, error.instance
    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = list(sub.get("properties", {}))
        return [
            (
                path + (k,),
                _unknown_key(_dotted(path + (k,)), k, allowed)
                if allowed
                else _msg(_dotted(path + (k,)), f"unknown key {k!r}", "remove it (this mapping takes no keys)"),
            )
            for k in value
            if k not in allowed
        ]
    if kind == "required" and isinstance(value, dict):
        props = sub.get("properties", {})
        return [
            (
                path + (k,),
                _msg(
                    _dotted(path + (k,)),
                    "missing (required)",
                    _with_description(f"add {k}: {_describe(props.get(k, {}), root)}", _resolve(props.get(k), root)),
                ),
            )
            for k in error.validator_value
            if k not in value
        ]
    key = _dotted(path)
    if kind == "minProperties":
        return [(path, _msg(key, "is empty", _with_description(f"give at least {error.validator_value} entry", sub)))]
    if kind == "enum":
        return [(path, _bad_choice(key, value, error.validator_value))]
    if kind in (
        "type",
        "anyOf",
        "oneOf",
        "const",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "pattern",
    ):
        expected = _describe(sub, root)
        return [
            (
                path,
                _msg(
                    key, f"{_show(value)} is not valid: expected {expected}", _with_description(f"give {expected}", sub)
                ),
            )
        ]
    return [(path, _msg(key, error.message[:200], _with_description("see schemas/config.schema.yaml", sub)))]


def _sets(override: dict, rel: tuple) -> bool:
    """Whether ``override`` (merged into a run, a dict value into the run's dict) sets the key at ``rel``."""
    if not rel or rel[0] not in override:
        return False
    value = override[rel[0]]
    return len(rel) == 1 or not isinstance(value, dict) or rel[1] in value


def schema_problems(config: dict, schema) -> list[str]:
    """Short messages for every schema violation of ``config`` (``schema``: a dict or a path), including the
    runs' ``subset_overrides`` (checked as the run they modify) and ``evaluation.subset_protocol`` entries
    (checked as ``evaluation.protocol``); deduplicated, in the schema's order."""
    from jsonschema import Draft202012Validator

    root = _as_schema(schema)
    out = [m for e in Draft202012Validator(root).iter_errors(config) for _, m in _error_messages(e, root)]

    def sub_validator(*where):
        return Draft202012Validator({"$defs": root.get("$defs", {}), "$ref": "#/" + "/".join(where)})

    if isinstance(config, dict):
        runs = sub_validator("$defs", "run")
        for r, spec in _mapping(config.get("runs")).items():
            for s, override in _mapping(_mapping(spec).get("subset_overrides")).items():
                if not isinstance(override, dict):
                    continue  # reported above
                base = ("runs", r, "subset_overrides", s)
                for e in runs.iter_errors(run_config(config, s, r)):  # only what the override itself sets
                    out += [m for path, m in _error_messages(e, root, base) if _sets(override, path[len(base) :])]
        evaluation = _mapping(config.get("evaluation"))
        protocol = sub_validator("$defs", "evaluation", "properties", "protocol")
        for s, overrides in _mapping(evaluation.get("subset_protocol")).items():
            for e in protocol.iter_errors(overrides):
                out += [m for _, m in _error_messages(e, root, ("evaluation", "subset_protocol", s))]
    return _unique(out)


def fill_defaults(config: dict, schema) -> None:
    """Fill the schema's ``default`` values into ``config`` in place, the way ``snakemake.utils.validate`` does
    (a default is set wherever a ``properties`` entry is missing, then validation descends into it)."""
    from jsonschema import Draft202012Validator, validators

    root = _as_schema(schema)
    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, sub):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if "default" in prop:
                    instance.setdefault(name, copy.deepcopy(prop["default"]))
        yield from validate_properties(validator, properties, instance, sub)

    filler = validators.extend(Draft202012Validator, {"properties": set_defaults})
    for _ in filler(root).iter_errors(config):
        pass


# ====================================================================== what the schema cannot know
def _teacher_model_problems(model, key: str) -> list[str]:
    registry = _optional("hessdistill.teachers.registry")
    if registry is None:
        return []
    forms = ", ".join(f[0] for f in registry.FORMS.values())
    if not isinstance(model, str) or not model:
        return [
            _msg(key, f"teacher name must be a non-empty string, got {_show(model)}", f"use one of the forms {forms}")
        ]
    prefix, _, rest = model.partition(":")
    if prefix not in registry.KNOWN_PREFIXES:
        return [
            _msg(
                key,
                f"unknown teacher {model!r}{_did_you_mean(prefix, registry.KNOWN_PREFIXES)}",
                f"use one of the forms {forms}",
            )
        ]
    form, needed = registry.FORMS[prefix][:2]
    parts = rest.split(":", needed - 1) if needed else []
    if len(parts) < needed or not all(parts):
        return [_msg(key, f"teacher {model!r} is incomplete", f"write it as {form}")]
    return []


def _init_parameters(source: Path, cls: str) -> tuple[list[str], bool] | None:
    """(parameter names, takes **kwargs) of ``cls.__init__`` read from ``source`` without importing it."""
    try:
        tree = ast.parse(source.read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    a = item.args
                    return [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs], a.kwarg is not None
    return None


def _teacher_problems(config: dict) -> list[str]:
    out = []
    for name, spec in _mapping(config.get("teachers")).items():
        spec, where = _mapping(spec), f"teachers.{name}"
        out += _teacher_model_problems(spec.get("model"), f"{where}.model")
        rows = spec.get("rows")
        if rows is not None and rows != "full" and (type(rows) is not int or rows < 1):
            out.append(
                _msg(
                    f"{where}.rows",
                    f"{_show(rows)} is not valid: expected an integer >= 1 or 'full'",
                    "give the number of Hessian rows stored per structure, or 'full'",
                )
            )
        model, options = spec.get("model"), _mapping(spec.get("options"))
        registry = _optional("hessdistill.teachers.registry")
        prefix = model.partition(":")[0] if isinstance(model, str) else None
        adapter = registry.FORMS.get(prefix) if registry is not None and prefix not in ("ase", "torch") else None
        if options and adapter:  # read from the adapter's source: importing it would import chgnet & co.
            module_file = Path(__file__).parents[1].joinpath(*adapter[2].split(".")[1:]).with_suffix(".py")
            params = _init_parameters(module_file, adapter[3])
            if params and not params[1]:
                valid = [p for p in params[0] if p not in _REGISTRY_ARGS]
                out += [
                    _unknown_key(f"{where}.options.{k}", k, valid, "teacher option") for k in options if k not in valid
                ]
    return out


def _student_problems(student: dict, key) -> list[str]:
    registry = _optional("hessdistill.students.registry")
    if registry is None:
        return []
    arch = student.get("arch")
    if arch not in registry.STUDENTS:
        return [_bad_choice(key("student", "arch"), arch, sorted(registry.STUDENTS), "student architecture")]
    module, cls = registry.STUDENTS[arch]
    mod = _optional(module)  # e.g. the MACE student without mace-torch: its hyper-parameters are not checked here
    if mod is None:
        return []
    params = inspect.signature(getattr(mod, cls).__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return []
    valid = [p for p in params if p != "self"]
    return [
        _unknown_key(key("student", k), k, valid, f"{arch} hyper-parameter")
        for k in student
        if k != "arch" and k not in valid
    ]


def _train_problems(cfg: dict, key) -> list[str]:
    """Problems of one run's TrainConfig options (``key(name, ...)``: the config key of an option)."""
    options, losses = _optional("hessdistill.training.config"), _optional("hessdistill.training.losses")
    out = []
    if options is not None:
        fields = sorted(options.TrainConfig.__dataclass_fields__)
        out += [_unknown_key(key(k), k, fields, "training option") for k in cfg if k not in fields]
        if "method" in cfg and cfg["method"] not in options.METHODS:
            out.append(_bad_choice(key("method"), cfg["method"], options.METHODS, "method"))
    if losses is not None:
        valid = [f for f in losses.LossWeights.__dataclass_fields__ if f != "extra"]
        out += [
            _unknown_key(key("weights", k), k, valid, "loss weight")
            for k in _mapping(cfg.get("weights"))
            if k not in valid
        ]
    if isinstance(cfg.get("student"), dict):
        out += _student_problems(cfg["student"], key)
    data, hessian = _optional("hessdistill.training.data"), _optional("hessdistill.core.hessian")
    choices = {
        "row_weighting": data and data.ROW_WEIGHTINGS,
        "probe": ("gaussian", "rademacher"),
        "vjp_method": hessian and hessian.VJP_METHODS,
        "energy_source": ("reference", "teacher"),
        "dtype": _DTYPES,
    }
    out += [
        _bad_choice(key(k), cfg[k], valid, k)
        for k, valid in choices.items()
        if valid and k in cfg and cfg[k] not in valid
    ]
    if "device" in cfg and not (isinstance(cfg["device"], str) and _DEVICE.match(cfg["device"])):
        out.append(_msg(key("device"), f"unknown device {_show(cfg['device'])}", _DEVICE_FIX))
    return out


def _hessian_rows_used(cfg: dict) -> bool | None:
    """Whether the run matches Hessian rows (its method's λ_H with its weights > 0); None when unknown here."""
    options = _optional("hessdistill.training.config")
    if options is None or cfg.get("method", "hessian") not in options.METHODS:
        return None
    weights = {k: v for k, v in _mapping(cfg.get("weights")).items() if k != "extra"}
    try:
        run = options.TrainConfig(method=cfg.get("method", "hessian"), weights=weights)
        return options.method_weights(run).hessian > 0
    except (HessdistillError, TypeError, ValueError):
        return None


def _run_problems(config: dict) -> list[str]:
    out = []
    subsets, teachers = list(_mapping(config.get("subsets"))), _mapping(config.get("teachers"))
    for r, spec in _mapping(config.get("runs")).items():
        spec = _mapping(spec)
        overrides = {s: o for s, o in _mapping(spec.get("subset_overrides")).items() if isinstance(o, dict)}
        out += [
            _bad_choice(f"runs.{r}.subset_overrides.{s}", s, subsets, "subset") for s in overrides if s not in subsets
        ]
        for i, s in enumerate(spec.get("subsets") or []):
            if s not in subsets:
                out.append(_bad_choice(f"runs.{r}.subsets[{i}]", s, subsets, "subset"))
        views = [(None, {k: v for k, v in spec.items() if k not in RUN_WORKFLOW_KEYS})]
        views += [(s, run_config(config, s, r)) for s in overrides]
        for s, cfg in views:
            override = overrides.get(s, {})

            def key(name, *sub, r=r, s=s, override=override):
                given = name in override and (not sub or sub[0] in _mapping(override[name]))
                head = f"runs.{r}.subset_overrides.{s}.{name}" if given else f"runs.{r}.{name}"
                return ".".join((head,) + sub)

            out += _train_problems(cfg, key)
            if s is None and overrides and set(spec.get("subsets", subsets)) <= set(overrides):
                continue  # every subset of this run overrides: rows are checked per subset below
            if not _hessian_rows_used(cfg):
                continue
            projection = cfg.get("method") == "hessian-projection" or cfg.get("row_weighting") == "projection"
            for t, tspec in teachers.items():
                rows = _mapping(tspec).get("rows")
                if projection and rows != "full":
                    what = "method" if cfg.get("method") == "hessian-projection" else "row_weighting"
                    out.append(
                        _msg(
                            key(what),
                            f"random-projection Hessian matching needs full Hessians, but "
                            f"teachers.{t}.rows is {_show(rows)}",
                            f"set teachers.{t}.rows: full, or use another method/row_weighting",
                        )
                    )
                elif (
                    type(rows) is int
                    and type(cfg.get("rows_per_structure")) is int
                    and cfg["rows_per_structure"] > rows
                ):
                    out.append(
                        _msg(
                            key("rows_per_structure"),
                            f"{cfg['rows_per_structure']} Hessian rows per structure, but teachers.{t}.rows "
                            f"stores only {rows}",
                            f"lower rows_per_structure to <= {rows}, or raise teachers.{t}.rows (or set it to 'full')",
                        )
                    )
    return out


def _split_names(spec) -> set | None:
    """The splits a subset's store will have (from its split fractions/counts, test_source and
    carve_test_from_train), or None where the config does not say."""
    spec = _mapping(spec)
    split = _mapping(spec.get("split"))
    given = split.get("fractions") or split.get("counts")
    if not isinstance(given, dict):
        return None
    names = set(given)
    if spec.get("test_source") or split.get("carve_test_from_train"):
        names.add("test")
    return names


def _extra_train_problems(config: dict) -> list[str]:
    """``runs.<run>.extra_train_subsets`` (and its ``subset_overrides`` entries): known subsets, not the run's
    own, each once, with a train split; for Hessian methods the teachers' ``hessian_splits`` include train."""
    out = []
    subsets, teachers = _mapping(config.get("subsets")), _mapping(config.get("teachers"))
    runs = _mapping(config.get("runs"))
    trained_on: dict = {}
    try:
        for s, _, r in combos(config):
            trained_on.setdefault(r, []).append(s)
    except (AttributeError, TypeError):  # malformed runs: reported by the schema check
        trained_on = {}
    for r, spec in runs.items():
        spec = _mapping(spec)
        views = [(f"runs.{r}.extra_train_subsets", spec.get("extra_train_subsets"), None)]
        views += [
            (f"runs.{r}.subset_overrides.{s}.extra_train_subsets", o.get("extra_train_subsets"), s)
            for s, o in _mapping(spec.get("subset_overrides")).items()
            if isinstance(o, dict) and "extra_train_subsets" in o
        ]
        for key, names, only in views:
            if not isinstance(names, list) or not names:
                continue
            if only is None and not trained_on.get(r):
                out.append(
                    _msg(
                        key,
                        f"run {r!r} is trained on no subset: every subset is used only as extra training data",
                        f"name the subsets it is trained on in runs.{r}.subsets",
                    )
                )
            for i, name in enumerate(names):
                if name not in subsets:
                    out.append(_bad_choice(f"{key}[{i}]", name, list(subsets), "subset"))
                    continue
                if name in names[:i]:
                    out.append(_msg(f"{key}[{i}]", f"subset {name!r} is listed twice", "list each subset once"))
                own = [s for s in trained_on.get(r, []) if only in (None, s)]
                if name in own:
                    out.append(
                        _msg(
                            f"{key}[{i}]",
                            f"subset {name!r} is a subset this run is trained on: its train split is in the training "
                            "set already",
                            f"remove {name!r} from the list (or restrict runs.{r}.subsets to the other subsets)",
                        )
                    )
                splits = _split_names(subsets[name])
                if splits is not None and "train" not in splits:
                    out.append(
                        _msg(
                            f"{key}[{i}]",
                            f"subset {name!r} has no train split (subsets.{name}.split gives {sorted(splits)})",
                            f"put its structures in train (subsets.{name}.split: {{counts: {{train: rest, val: 0, "
                            "test: 0}, seed: 0}})",
                        )
                    )
            for s in [only] if only else trained_on.get(r, []):
                if not _hessian_rows_used(run_config(config, s, r)):
                    continue
                for t, tspec in teachers.items():
                    hs = _mapping(tspec).get("hessian_splits")
                    if isinstance(hs, list) and "train" not in hs:
                        out.append(
                            _msg(
                                key,
                                f"run {r!r} matches Hessian rows, but teachers.{t}.hessian_splits ({hs}) does not "
                                "include train, so the extra subsets would have no Hessian rows of their train split",
                                f"add train to teachers.{t}.hessian_splits",
                            )
                        )
    return out


def _builtin_problems(options: dict, where: str) -> list[str]:
    builtin = _optional("hessdistill.data.builtin")
    out = []
    if builtin is not None:
        valid = ["teacher", "dtype", "device"] + sorted(builtin.GeneratorSettings.__dataclass_fields__)
        out += [_unknown_key(f"{where}.{k}", k, valid, "generator option") for k in options if k not in valid]
        if "family" in options:
            try:  # the generator's own check (no structure matches the impossible composition: nothing is built)
                builtin._parents(builtin.GeneratorSettings(family=options["family"], compositions=("\0",)))
            except HessdistillError as exc:
                out.append(
                    _msg(
                        f"{where}.family",
                        f"unknown built-in family {_show(options['family'])}",
                        str(exc).split("; ", 1)[-1],
                    )
                )
    return out + _generating_teacher_problems(options, where)


def _generating_teacher_problems(options: dict, where: str) -> list[str]:
    """The ``teacher``, ``dtype`` and ``device`` options of a builtin or sample source."""
    out = []
    if "teacher" in options:
        out += _teacher_model_problems(options["teacher"], f"{where}.teacher")
    if "dtype" in options and options["dtype"] not in _DTYPES:
        out.append(_bad_choice(f"{where}.dtype", options["dtype"], _DTYPES, "dtype"))
    if "device" in options and not (isinstance(options["device"], str) and _DEVICE.match(options["device"])):
        out.append(_msg(f"{where}.device", f"unknown device {_show(options['device'])}", _DEVICE_FIX))
    return out


def _sample_problems(src: dict, where: str, base_dir) -> list[str]:
    """A ``sample`` source: its options (sampling settings, each checked by the sampler's own check), the teacher,
    and its seeds file, which must exist or be a workflow output under the results folder (made by an earlier
    rule).  ``strains``, ``shear_sigma`` and ``supercells`` act on periodic seeds only (documented, not checked)."""
    from ..core.paths import RESULTS

    options, out = _mapping(src.get("options")), []
    sampling = _optional("hessdistill.data.sampling")
    if sampling is not None:
        valid = ["teacher", "dtype", "device"] + list(sampling.SamplingSettings.__dataclass_fields__)
        out += [_unknown_key(f"{where}.options.{k}", k, valid, "sampling option") for k in options if k not in valid]
        for k, v in options.items():
            if k in valid[3:]:
                try:
                    sampling.settings_from_options(**{k: v})
                except HessdistillError as exc:
                    problem, _, fix = str(exc).partition("\n  fix: ")
                    out.append(_msg(f"{where}.options.{k}", problem.split(": ", 1)[-1], fix or None))
    out += _generating_teacher_problems(options, f"{where}.options")
    for key in ("url", "sha256", "md5"):
        if src.get(key):
            out.append(
                _msg(
                    f"{where}.{key}",
                    "a sample source is never downloaded or checksummed: its path is the seeds file",
                    f"remove {key}",
                )
            )
    path = src.get("path")
    if not isinstance(path, str) or not path:
        out.append(
            _msg(
                f"{where}.path",
                "missing: source 'sample' samples around the seed structures of a file",
                "give the seeds file (any file ase.io.read reads), relative to data_dir",
            )
        )
        return out
    full = Path(path) if Path(path).is_absolute() else Path(base_dir) / path
    rel = Path(os.path.relpath(os.path.abspath(full), os.path.abspath(".")))
    if not full.exists() and rel.parts[:1] != (RESULTS,):
        out.append(
            _msg(
                f"{where}.path",
                f"seeds file {str(full)!r} does not exist and is not a workflow output under {RESULTS}/",
                "correct the path (relative to data_dir), or write the seeds file first",
            )
        )
    return out


def _source_problems(src: dict, where: str, base_dir=".") -> list[str]:
    name, options = src.get("name"), _mapping(src.get("options"))
    if name == "builtin":
        return _builtin_problems(options, f"{where}.options")
    if name == "sample":
        return _sample_problems(src, where, base_dir)
    sources = _optional("hessdistill.data.sources")
    if sources is None:
        return []
    if name not in sources.READERS:
        return [_bad_choice(f"{where}.name", name, list(sources.READERS) + ["builtin", "sample"], "source")]
    out = []
    if not src.get("path"):
        out.append(
            _msg(
                f"{where}.path",
                f"missing: source {name!r} reads a file",
                "give the file's path (relative to data_dir); missing files are downloaded",
            )
        )
    params = inspect.signature(sources.READERS[name]).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        valid = [p for p, v in params.items() if v.kind is v.KEYWORD_ONLY]
        out += [
            _unknown_key(f"{where}.options.{k}", k, valid, f"{name} reader option") for k in options if k not in valid
        ]
    return out


def _selector_problems(selectors, where: str, base_dir) -> list[str]:
    """compile_selectors per top-level selector; problems of an id list *file* (missing, empty, changed) are
    data, left to the prepare job (the file may be written after the config)."""
    subsets = _optional("hessdistill.data.subsets")
    if subsets is None or not isinstance(selectors, list):
        return []
    out = []
    for i, sel in enumerate(selectors):
        try:
            subsets.compile_selectors([sel], base_dir=base_dir)
        except subsets.SelectorError as exc:
            text = str(exc)
            if text.startswith("file "):
                continue
            head, _, fix = text.partition("\n  fix: ")
            m = re.match(r"selectors\[0\](\S*): (.*)", head, flags=re.S)
            inner, problem = (m.group(1), m.group(2)) if m else ("", head)
            out.append(
                _msg(
                    f"{where}[{i}]{inner}",
                    problem,
                    fix or "correct this selector (the selectors are documented in hessdistill.data.subsets)",
                )
            )
    return out


def _split_problems(spec: dict, where: str) -> list[str]:
    split, out = _mapping(spec.get("split")), []
    for kind in ("fractions", "counts"):
        for name in _mapping(split.get(kind)):
            if name not in _SPLITS:
                out.append(_bad_choice(f"{where}.split.{kind}.{name}", name, _SPLITS, "split name"))
    if "fractions" in split and "counts" in split:
        out.append(_msg(f"{where}.split", "gives both fractions and counts", "keep one of them"))
    fractions = _mapping(split.get("fractions"))
    if (
        fractions
        and all(isinstance(v, (int, float)) for v in fractions.values())
        and abs(sum(fractions.values()) - 1) > 1e-6
    ):
        out.append(
            _msg(
                f"{where}.split.fractions",
                f"the fractions sum to {sum(fractions.values()):g}, not 1",
                "make them sum to 1 (or use counts to subsample)",
            )
        )
    names = set(_mapping(split.get("fractions") or split.get("counts")))
    reasons = [
        r
        for r, given in (
            ("a test_source", "test_source" in spec),
            ("carve_test_from_train", split.get("carve_test_from_train")),
        )
        if given
    ]
    if reasons and "test" in names:
        out.append(
            _msg(
                f"{where}.split",
                f"with {reasons[0]} the split must not include 'test'",
                "remove 'test' from the split fractions/counts",
            )
        )
    return out


def _subset_problems(config: dict) -> list[str]:
    out, base_dir = [], config.get("data_dir", ".")
    for s, spec in _mapping(config.get("subsets")).items():
        spec, where = _mapping(spec), f"subsets.{s}"
        for k in ("source", "test_source"):
            if isinstance(spec.get(k), dict):
                out += _source_problems(spec[k], f"{where}.{k}", base_dir)
        out += _selector_problems(spec.get("selectors"), f"{where}.selectors", base_dir)
        out += _split_problems(spec, where)
    return out


def _evaluation_problems(config: dict) -> list[str]:
    evaluation, subsets = _mapping(config.get("evaluation")), list(_mapping(config.get("subsets")))
    protocols = {"evaluation.protocol": _mapping(evaluation.get("protocol"))}
    out = []
    teachers_evs = evaluation.get("evaluate_teachers")
    if isinstance(teachers_evs, list):
        for ev in teachers_evs:
            if ev not in (evaluation.get("evaluations") or []):
                out.append(
                    _msg(
                        "evaluation.evaluate_teachers",
                        f"{_show(ev)} is not in evaluation.evaluations",
                        f"use some of: {', '.join(evaluation.get('evaluations') or [])} (or add it there)",
                    )
                )
    for s, p in _mapping(evaluation.get("subset_protocol")).items():
        if s not in subsets:
            out.append(_bad_choice(f"evaluation.subset_protocol.{s}", s, subsets, "subset"))
        protocols[f"evaluation.subset_protocol.{s}"] = _mapping(p)
    md = _optional("hessdistill.evaluation.md")
    if md is not None:
        for where, p in protocols.items():
            section = _mapping(p.get("md"))
            if isinstance(section.get("ensemble"), str) and section["ensemble"].lower() not in md.ENSEMBLES:
                out.append(_bad_choice(f"{where}.md.ensemble", section["ensemble"], md.ENSEMBLES, "ensemble"))
            if "criterion" in section and section["criterion"] not in md.CRITERIA:
                out.append(_bad_choice(f"{where}.md.criterion", section["criterion"], md.CRITERIA, "criterion"))
    out += _disagreement_problems(config, protocols)
    for where, p in protocols.items():  # the relaxations' re-scoring calculator: named as teachers are
        rc = _mapping(p.get("relax")).get("reference_calculator")
        if isinstance(rc, dict) and "model" in rc:
            out += _teacher_model_problems(rc["model"], f"{where}.relax.reference_calculator.model")
    return out


def _disagreement_problems(config: dict, protocols: dict) -> list[str]:
    """The disagreement evaluation: not of teachers; its MD and threshold options; each listed partner a run trained
    on the subset; and at least one partner for every run it evaluates."""
    evaluation = _mapping(config.get("evaluation"))
    out = []
    teacher_evs = evaluation.get("evaluate_teachers")
    if isinstance(teacher_evs, list) and "disagreement" in teacher_evs:
        out.append(
            _msg(
                "evaluation.evaluate_teachers",
                "lists 'disagreement', which compares a student with partner students: the teacher has none",
                "remove 'disagreement' from evaluation.evaluate_teachers (true evaluates the teachers without it)",
            )
        )
    module = _optional("hessdistill.evaluation.disagreement")
    if module is not None:
        for where, p in protocols.items():
            section = _mapping(p.get("disagreement"))
            out += [_msg(f"{where}.disagreement", problem) for problem in module.protocol_problems(section)]
    if "disagreement" not in (evaluation.get("evaluations") or []):
        return out
    runs = _mapping(config.get("runs"))
    subset_protocol = _mapping(evaluation.get("subset_protocol"))
    for s, t, r in combos(config):
        own = "partners" in _mapping(_mapping(subset_protocol.get(s)).get("disagreement"))
        key = (
            f"evaluation.subset_protocol.{s}.disagreement.partners"
            if own
            else "evaluation.protocol.disagreement.partners"
        )
        partners = disagreement_partners(config, s, t, r)
        trained = [x for ss, tt, x in combos(config) if ss == s and tt == t]
        for name in partners:
            if name not in runs:
                out.append(_bad_choice(key, name, list(runs), "run"))
            elif name not in trained:
                out.append(
                    _msg(
                        key,
                        f"partner run {name!r} is not trained on subset {s!r} (runs.{name}.subsets), so it cannot "
                        f"be compared with run {r!r} there",
                        f"add {s!r} to runs.{name}.subsets, or list partners trained on {s!r}",
                    )
                )
        if not partners:
            auto = evaluation_protocol(config, s, "disagreement").get("partners", "auto") == "auto"
            out.append(
                _msg(
                    key,
                    f"run {r!r} on subset {s!r} with teacher {t!r} has no partner run for the disagreement "
                    f"evaluation ({'no other run of this subset and teacher' if auto else 'the list names only it'})",
                    "add a run trained on the same subset (e.g. an undistilled one: method: undistilled), list "
                    "partner runs in evaluation.protocol.disagreement.partners, or remove 'disagreement' from "
                    "evaluation.evaluations",
                )
            )
    return out


def semantic_problems(config: dict) -> list[str]:
    """Short messages for what the schema cannot check, against the library's registries: teacher names and
    options, training options (runs merged with each ``subset_overrides`` entry), students and their
    hyper-parameters, loss weights, Hessian rows per structure vs the teachers' rows, sources, generator and
    reader options, selectors, splits, subset names.  Expects the schema's defaults filled in."""
    return _unique(
        _teacher_problems(config)
        + _run_problems(config)
        + _extra_train_problems(config)
        + _subset_problems(config)
        + _evaluation_problems(config)
    )


# ====================================================================== the workflow entry point
def _error(problems: list[str]) -> ConfigError:
    shown = problems[:MAX_MESSAGES]
    more = len(problems) - len(shown)
    return ConfigError(
        f"the workflow config has {len(problems)} problem(s):\n"
        + "\n".join(shown)
        + (f"\n... and {more} more" if more else "")
    )


def check_workflow_config(config: dict, schema_path) -> None:
    """Coerce ``--config`` strings, validate against the schema, fill its defaults, then check the values
    against the library; raise :class:`ConfigError` listing the problems (config key, problem, fix)."""
    schema = load_schema(schema_path)
    coerce_cli_values(config, schema)
    problems = schema_problems(config, schema)
    if problems:
        raise _error(problems)
    fill_defaults(config, schema)
    _SKIPPED.clear()
    problems = semantic_problems(config)
    if problems:
        raise _error(problems)
    if _SKIPPED:
        print(
            f"note: some config checks were skipped here ({'; '.join(sorted(set(_SKIPPED.values())))}); "
            f"the jobs check their own settings",
            file=sys.stderr,
        )


# ====================================================================== sharded teacher labelling
def label_shard_problems(config: dict, structure_counts: dict) -> list[str]:
    """``teachers.<name>.shards`` against the number of structures of each subset (``structure_counts``:
    {subset: structures in all splits}, for the subsets whose structure store exists already)."""
    out = []
    for t, spec in _mapping(config.get("teachers")).items():
        n = _mapping(spec).get("shards", 1)
        if type(n) is not int or n < 1:
            out.append(
                _msg(
                    f"teachers.{t}.shards",
                    f"{_show(n)} is not valid: expected an integer >= 1",
                    "set it to the number of labelling jobs per subset (1, the default: one job)",
                )
            )
            continue
        for s, m in structure_counts.items():
            if m is not None and n > m:
                out.append(
                    _msg(
                        f"teachers.{t}.shards",
                        f"{n} shards, but subset {s!r} has only {m} structures to label",
                        f"set teachers.{t}.shards to at most {m} (1: one labelling job)",
                    )
                )
    return out


def stored_structure_counts(paths: dict) -> dict:
    """{subset: number of structures in all splits} of the structure stores of ``paths`` ({subset: path}) that
    exist (h5py only: no torch on the submitting node); the others are left out."""
    h5py = _optional("h5py")
    out = {}
    if h5py is None:
        return out
    for s, p in paths.items():
        if not Path(p).is_file():
            continue
        try:
            with h5py.File(p, "r") as f:
                out[s] = sum(
                    int(g["n_atoms"].shape[0]) for g in f.values() if isinstance(g, h5py.Group) and "n_atoms" in g
                )
        except (OSError, KeyError):
            continue  # unreadable: the jobs report it
    return out


def check_label_shards(config: dict, structure_paths: dict) -> None:
    """Raise :class:`ConfigError` when a teacher's ``shards`` is < 1 or exceeds the structures of a subset whose
    store exists (``structure_paths``: {subset: path}); the shard jobs check stores made later themselves."""
    sharded = any(_mapping(spec).get("shards", 1) != 1 for spec in _mapping(config.get("teachers")).values())
    if not sharded:
        return
    problems = label_shard_problems(config, stored_structure_counts(structure_paths))
    if problems:
        raise _error(problems)
