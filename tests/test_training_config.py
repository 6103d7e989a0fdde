"""TrainConfig and the workflow's run options (schemas/config.schema.yaml, $defs/run) stay in step: the same
options (beside the workflow's own keys), the same defaults and choices where the schema states them."""

import dataclasses
from pathlib import Path

import pytest

from hessdistill.core.dtypes import DTYPES
from hessdistill.training.config import LR_SCHEDULES, METHODS, TrainConfig
from hessdistill.training.losses import N2N_REDUCTIONS
from hessdistill.workflow.config_check import load_schema
from hessdistill.workflow.params import RUN_WORKFLOW_KEYS

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"

#: TrainConfig fields that are no run option: the workflow sets them for every job (the rule's thread count)
RUNTIME_FIELDS = ("threads",)

#: defaults the schema's descriptions state in words: (words in the description, the default they mean)
DESCRIBED_DEFAULTS = {
    "adam_eps": ("default 1e-8", 1e-8),
    "ema_warmup": ("default true", True),
    "hessian_until": ("1 (default)", 1.0),
    "hessian_outlier_threshold": ("null (default)", None),
    "hessian_outlier_weight": ("default 1e-8", 1e-8),
    "n2n_reduction": ("sum_features (default", "sum_features"),
}


@pytest.fixture(scope="module")
def run_options():
    schema = load_schema(SCHEMA)
    assert schema["properties"]["runs"]["additionalProperties"] == {"$ref": "#/$defs/run"}
    return schema["$defs"]["run"]["properties"]


def defaults() -> dict:
    """TrainConfig's default of every field (default factories called)."""
    return {
        f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        for f in dataclasses.fields(TrainConfig)
    }


def test_every_option_is_in_both(run_options):
    fields = set(defaults())
    options = set(run_options) - set(RUN_WORKFLOW_KEYS)
    assert set(RUN_WORKFLOW_KEYS) <= set(run_options), "the workflow's own run keys are run options of the schema"
    assert sorted(fields - set(RUNTIME_FIELDS) - options) == [], "TrainConfig fields missing from the schema"
    assert sorted(options - fields) == [], "schema run options that are no TrainConfig field"
    assert not set(RUNTIME_FIELDS) & options


def test_defaults_agree(run_options):
    want = defaults()
    stated = {k: v["default"] for k, v in run_options.items() if "default" in v and k in want}
    assert stated == {k: want[k] for k in stated}
    for key, (words, value) in DESCRIBED_DEFAULTS.items():
        assert words in run_options[key].get("description", ""), key
        assert want[key] == value, key


def test_choices_agree(run_options):
    choices = {"method": METHODS, "lr_schedule": LR_SCHEDULES, "n2n_reduction": N2N_REDUCTIONS, "dtype": tuple(DTYPES)}
    for key, valid in choices.items():
        assert tuple(run_options[key]["enum"]) == tuple(valid), key
    want = defaults()
    for key, spec in run_options.items():
        if "enum" in spec and key in want:
            assert want[key] in spec["enum"], f"TrainConfig's default {key} = {want[key]!r} is not a schema choice"


def test_dtype_names_map_both_ways():
    import torch

    from hessdistill.core.dtypes import UnknownDtypeError, dtype_name, torch_dtype

    assert DTYPES == {"float32": torch.float32, "float64": torch.float64}
    for name, dtype in DTYPES.items():
        assert torch_dtype(name) is dtype and torch_dtype(dtype) is dtype and dtype_name(dtype) == name
    with pytest.raises(UnknownDtypeError, match="float16"):
        torch_dtype("float16")
    with pytest.raises(ValueError, match="bfloat16"):
        dtype_name(torch.bfloat16)
