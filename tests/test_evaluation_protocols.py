"""The evaluation protocols have one home (hessdistill.evaluation.protocols): the config schema's evaluation section,
the registry of evaluation functions and the teacher defaults are kept in step with it here; and the workflow can
import it on a login node without numpy or torch."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hessdistill.evaluation.protocols import DEFAULTS, EVALUATIONS, GPU_EVALUATIONS, MINIMA_KEYS, NEEDS_REFERENCE

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "schemas" / "config.schema.yaml").read_text(encoding="utf-8"))
EVALUATION = SCHEMA["$defs"]["evaluation"]["properties"]
PROTOCOL = EVALUATION["protocol"]["properties"]


def test_the_schema_lists_the_evaluations_of_the_protocols():
    assert list(PROTOCOL) == list(EVALUATIONS)
    assert EVALUATION["evaluations"]["items"]["enum"] == list(EVALUATIONS)
    assert set(EVALUATION["evaluations"]["default"]) <= set(EVALUATIONS)
    listed = [a for a in EVALUATION["evaluate_teachers"]["anyOf"] if a.get("type") == "array"]
    assert [a["items"]["enum"] for a in listed] == [list(EVALUATIONS)]
    assert EVALUATION["split"]["default"] == DEFAULTS["split"]
    assert set(DEFAULTS) == {"split", *EVALUATIONS}


@pytest.mark.parametrize("evaluation", EVALUATIONS)
def test_the_schema_protocol_has_the_options_and_defaults_of_the_protocols(evaluation):
    """Same option names; a default the schema states equals the library's (the schema states none today: a default
    there would be filled into every config and change every evaluation's params); every library default is valid
    under the schema."""
    from jsonschema import Draft202012Validator

    section = PROTOCOL[evaluation]
    assert section.get("additionalProperties") is False
    assert sorted(section["properties"]) == sorted(DEFAULTS[evaluation])
    for option, spec in section["properties"].items():
        if "default" in spec:
            assert spec["default"] == DEFAULTS[evaluation][option], f"{evaluation}.{option}"
    errors = [
        f"{'.'.join(map(str, e.path))}: {e.message}"
        for e in Draft202012Validator(section).iter_errors(DEFAULTS[evaluation])
    ]
    assert not errors, f"the library's {evaluation} defaults are invalid under the schema: {errors}"


def test_protocol_choices_in_the_code_accept_the_defaults():
    from hessdistill.evaluation.md import CRITERIA, ENSEMBLES
    from hessdistill.evaluation.relax import OPTIMIZERS

    assert DEFAULTS["md"]["ensemble"] in ENSEMBLES and DEFAULTS["md"]["criterion"] in CRITERIA
    assert DEFAULTS["relax"]["optimizer"] in OPTIMIZERS
    assert DEFAULTS["md"]["bond_reference"] in PROTOCOL["md"]["properties"]["bond_reference"]["enum"]
    assert DEFAULTS["speed"]["student_format"] in PROTOCOL["speed"]["properties"]["student_format"]["enum"]


def test_the_registry_runs_every_protocol():
    from hessdistill.core.errors import HessdistillError
    from hessdistill.evaluation.registry import REGISTRY, get_evaluation

    assert tuple(REGISTRY) == EVALUATIONS
    for name, ev in REGISTRY.items():
        assert ev.name == name and ev.needs_reference == (name in NEEDS_REFERENCE) and ev.defaults is DEFAULTS[name]
        assert callable(ev.run)
    assert set(NEEDS_REFERENCE) <= set(EVALUATIONS) and set(GPU_EVALUATIONS) <= set(EVALUATIONS)
    assert set(MINIMA_KEYS) <= set(DEFAULTS["vibrations"])
    with pytest.raises(HessdistillError, match="unknown evaluation 'tset'"):
        get_evaluation("tset")


def test_teacher_defaults_have_one_home():
    """The library loads a teacher in TEACHER_DEFAULTS when the caller does not say; the schema's evaluation teacher
    dtype and the teacher entry's options and Hessian-row route default to the same.  (The teacher entry's dtype,
    float32, and rows, 8, are the workflow's labelling settings, which its label jobs always pass.)"""
    from hessdistill.teachers import TEACHER_DEFAULTS, AutogradTeacher, Teacher, load_teacher, teacher_from_spec
    from hessdistill.teachers.reference import reference_calculator

    teacher = SCHEMA["$defs"]["teacher"]["properties"]
    assert EVALUATION["teacher_dtype"]["default"] == TEACHER_DEFAULTS["dtype"]
    assert teacher["options"]["default"] == TEACHER_DEFAULTS["options"]
    assert teacher["vjp_method"]["default"] == AutogradTeacher.vjp_method
    for fn in (load_teacher, teacher_from_spec, reference_calculator, Teacher.__init__):
        assert inspect.signature(fn).parameters["dtype"].default == TEACHER_DEFAULTS["dtype"], fn.__qualname__


BLOCK = """
import sys
class Block:
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("numpy", "torch", "ase", "h5py", "scipy"):
            raise ImportError("not on the login node: " + name)
sys.meta_path.insert(0, Block())
"""


@pytest.mark.parametrize("module", ["hessdistill.evaluation", "hessdistill.evaluation.protocols"])
def test_the_workflow_imports_the_protocols_without_numpy_or_torch(module):
    code = (
        BLOCK + f"import {module}\nfrom hessdistill.evaluation.protocols import merge_config\n"
        "assert merge_config({'md': {'steps': 3}})['md']['steps'] == 3\n"
    )
    env_path = str(ROOT / "src")
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr
