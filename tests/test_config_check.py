"""hessdistill.workflow.config_check: every config value checked at workflow start, with short messages (config key + fix).

Unit tests of each check on configs/ci-tiny.yaml with one bad value, then a few Snakemake dry runs: a bad value
fails in a few lines naming the key, and `--config use_gpu=true` (a string for Snakemake) is accepted.
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hessdistill.core.errors import HessdistillError
from hessdistill.workflow import config_check as cc
from hessdistill.workflow.config_check import (
    ConfigError,
    check_workflow_config,
    coerce_cli_values,
    fill_defaults,
    load_schema,
    schema_problems,
    semantic_problems,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "schemas" / "config.schema.yaml"
SCHEMA = load_schema(SCHEMA_PATH)
CI_TINY = ROOT / "configs" / "ci-tiny.yaml"
SHIPPED = sorted(ROOT.glob("configs/*.yaml")) + [ROOT / "config.yaml"]


def base() -> dict:
    return yaml.safe_load(CI_TINY.read_text())


def problems_of(config) -> str:
    """The ConfigError message of check_workflow_config, or '' when the config passes."""
    try:
        check_workflow_config(config, SCHEMA_PATH)
    except ConfigError as exc:
        return str(exc)
    return ""


# ---------------------------------------------------------------- good configs
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_pass_and_get_defaults(path):
    cfg = yaml.safe_load(path.read_text())
    check_workflow_config(cfg, SCHEMA_PATH)
    assert cfg["evaluation"]["split"] in ("train", "val", "test")
    assert all("rows" in t and "vjp_method" in t for t in cfg["teachers"].values())
    assert "resources" in cfg and cfg["gpu_request"] == {"gpu": 1}


def test_defaults_are_filled_as_snakemake_fills_them():
    validate = pytest.importorskip("snakemake.utils").validate
    for path in SHIPPED:
        ours, theirs = yaml.safe_load(path.read_text()), yaml.safe_load(path.read_text())
        fill_defaults(ours, SCHEMA)
        validate(theirs, str(SCHEMA_PATH))
        assert ours == theirs, path.name


def test_config_error_is_a_hessdistill_error():
    assert issubclass(ConfigError, HessdistillError)


# ---------------------------------------------------------------- --config values
def test_cli_strings_become_booleans_and_numbers():
    cfg = base()
    cfg.update(use_gpu="true", gpu_request={"gpu": "2"}, data_dir="1", report={"float_digits": "3"})
    cfg["teachers"]["chgnet"].update(rows="8", node_features="Off")
    cfg["teachers"]["full"] = {"model": "chgnet", "rows": "full"}
    cfg["runs"]["tiny-hessian"].update(lr="0.01", amsgrad="no")
    coerce_cli_values(cfg, SCHEMA)
    assert cfg["use_gpu"] is True and cfg["gpu_request"] == {"gpu": 2} and cfg["report"]["float_digits"] == 3
    assert cfg["data_dir"] == "1"  # a string property stays a string
    assert cfg["teachers"]["chgnet"]["rows"] == 8 and cfg["teachers"]["full"]["rows"] == "full"
    assert cfg["teachers"]["chgnet"]["node_features"] is False
    assert cfg["runs"]["tiny-hessian"]["lr"] == 0.01 and cfg["runs"]["tiny-hessian"]["amsgrad"] is False
    for text, value in [
        ("True", True),
        ("YES", True),
        ("on", True),
        ("1", True),
        ("false", False),
        ("0", False),
        (1, True),
        (0, False),
    ]:
        cfg = {"use_gpu": text}
        coerce_cli_values(cfg, SCHEMA)
        assert cfg["use_gpu"] is value
    cfg = {"use_gpu": "maybe"}
    coerce_cli_values(cfg, SCHEMA)
    assert cfg["use_gpu"] == "maybe"  # left for the schema check to report


# ---------------------------------------------------------------- bad values -> key + fix
def _set(path, value):
    def mutate(cfg):
        *head, last = path
        for k in head:
            cfg = cfg[k]
        cfg[last] = value

    return mutate


def _delete(path):
    def mutate(cfg):
        *head, last = path
        for k in head:
            cfg = cfg[k]
        del cfg[last]

    return mutate


T, R, S = ("teachers", "chgnet"), ("runs", "tiny-hessian"), ("subsets", "tiny-sto")
BAD = {
    # schema: types, ranges, enums, unknown and missing keys
    "rows-word": (_set(T + ("rows",), "eight"), "teachers.chgnet.rows", "expected an integer >= 1 or 'full'"),
    "rows-negative": (_set(T + ("rows",), -3), "teachers.chgnet.rows", "-3 is not valid"),
    "use-gpu": (_set(("use_gpu",), "maybe"), "use_gpu", "expected true or false"),
    "lr": (_set(R + ("lr",), 0), "runs.tiny-hessian.lr", "expected a number > 0"),
    "ema-decay": (_set(R + ("ema_decay",), 1.5), "runs.tiny-hessian.ema_decay", "<= 1"),
    "max-epochs": (_set(R + ("max_epochs",), 0), "runs.tiny-hessian.max_epochs", ">= 1"),
    "method": (_set(R + ("method",), "hesian"), "runs.tiny-hessian.method", "did you mean 'hessian'"),
    "run-key": (_set(R + ("max_epoch",), 3), "runs.tiny-hessian.max_epoch", "did you mean 'max_epochs'"),
    "top-key": (_set(("subsetz",), {}), "subsetz", "did you mean 'subsets'"),
    "missing-model": (_delete(T + ("model",)), "teachers.chgnet.model", "missing"),
    "md-steps": (_set(("evaluation", "protocol", "md", "steps"), 0), "evaluation.protocol.md.steps", ">= 1"),
    "override-key": (
        _set(R + ("subset_overrides",), {"tiny-sto": {"rows_per_structur": 1}}),
        "runs.tiny-hessian.subset_overrides.tiny-sto.rows_per_structur",
        "did you mean",
    ),
    "override-value": (
        _set(R + ("subset_overrides",), {"tiny-sto": {"batch_size": 0}}),
        "runs.tiny-hessian.subset_overrides.tiny-sto.batch_size",
        ">= 1",
    ),
    "subset-protocol": (
        _set(("evaluation", "subset_protocol"), {"tiny-sto": {"md": {"ensembel": "nvt"}}}),
        "evaluation.subset_protocol.tiny-sto.md.ensembel",
        "did you mean 'ensemble'",
    ),
    # the library's registries
    "teacher-typo": (_set(T + ("model",), "chgnett"), "teachers.chgnet.model", "did you mean 'chgnet'"),
    "teacher-form": (_set(T + ("model",), "ase:ase.calculators.emt"), "teachers.chgnet.model", "ase:<module>:<Class>"),
    "teacher-option": (
        _set(T + ("options",), {"box_paddin": 1.0}),
        "teachers.chgnet.options.box_paddin",
        "did you mean 'box_padding'",
    ),
    "arch": (_set(R + ("student", "arch"), "painnn"), "runs.tiny-hessian.student.arch", "did you mean 'painn'"),
    "hyper-parameter": (_set(R + ("student", "hiden"), 16), "runs.tiny-hessian.student.hiden", "did you mean 'hidden'"),
    "weights": (_set(R + ("weights",), {"hesian": 1.0}), "runs.tiny-hessian.weights.hesian", "energy_grad"),
    "row-weighting": (_set(R + ("row_weighting",), "err"), "runs.tiny-hessian.row_weighting", "row_norm"),
    "probe": (_set(R + ("probe",), "gauss"), "runs.tiny-hessian.probe", "rademacher"),
    "vjp-method": (_set(R + ("vjp_method",), "fast"), "runs.tiny-hessian.vjp_method", "batched"),
    "device": (_set(R + ("device",), "gpu"), "runs.tiny-hessian.device", "cuda:<index>"),
    "rows-per-structure": (
        _set(R + ("rows_per_structure",), 5),
        "runs.tiny-hessian.rows_per_structure",
        "teachers.chgnet.rows",
    ),
    "override-rows": (
        _set(R + ("subset_overrides",), {"tiny-sto": {"rows_per_structure": 4}}),
        "runs.tiny-hessian.subset_overrides.tiny-sto.rows_per_structure",
        "teachers.chgnet.rows",
    ),
    "projection": (_set(R + ("method",), "hessian-projection"), "runs.tiny-hessian.method", "rows: full"),
    "override-student": (
        _set(R + ("subset_overrides",), {"tiny-sto": {"student": {"cutof": 5.0}}}),
        "runs.tiny-hessian.subset_overrides.tiny-sto.student.cutof",
        "did you mean 'cutoff'",
    ),
    "override-subset": (
        _set(R + ("subset_overrides",), {"tiny": {"lr": 0.01}}),
        "runs.tiny-hessian.subset_overrides.tiny",
        "did you mean 'tiny-sto'",
    ),
    "run-subsets": (_set(R + ("subsets",), ["tiny-st"]), "runs.tiny-hessian.subsets[0]", "tiny-sto"),
    "protocol-subset": (
        _set(("evaluation", "subset_protocol"), {"tiny": {"md": {"steps": 5}}}),
        "evaluation.subset_protocol.tiny",
        "did you mean 'tiny-sto'",
    ),
    "ensemble": (_set(("evaluation", "protocol", "md", "ensemble"), "npt"), "evaluation.protocol.md.ensemble", "nvt"),
    "teacher-evaluations": (
        _set(("evaluation", "evaluate_teachers"), ["test", "phonons"]),
        "evaluation.evaluate_teachers",
        "'phonons' is not in evaluation.evaluations",
    ),
    "teacher-evaluations-type": (
        _set(("evaluation", "evaluate_teachers"), "md"),
        "evaluation.evaluate_teachers",
        "expected",
    ),
    "selector": (
        _set(S + ("selectors",), [{"max_atoms": 60}, {"contains_element": {"elements": ["O"]}}]),
        "subsets.tiny-sto.selectors[1]",
        "did you mean 'contains_elements'",
    ),
    "nested-selector": (
        _set(S + ("selectors",), [{"any_of": [{"max_atoms": 5}, {"max_atom": 9}]}]),
        "subsets.tiny-sto.selectors[0].any_of[1]",
        "did you mean 'max_atoms'",
    ),
    "generator-option": (
        _set(S + ("source", "options", "n_trajectorys"), 3),
        "subsets.tiny-sto.source.options.n_trajectorys",
        "did you mean 'n_trajectories'",
    ),
    "generator-family": (
        _set(S + ("source", "options", "family"), "molecule"),
        "subsets.tiny-sto.source.options.family",
        "'molecules'",
    ),
    "generator-teacher": (
        _set(S + ("source", "options", "teacher"), "sevenet"),
        "subsets.tiny-sto.source.options.teacher",
        "did you mean 'sevenn'",
    ),
    "reader-option": (
        _set(S + ("source",), {"name": "generic", "path": "x.xyz", "options": {"energy": "E"}}),
        "subsets.tiny-sto.source.options.energy",
        "energy_key",
    ),
    "source-path": (_set(S + ("source",), {"name": "md22"}), "subsets.tiny-sto.source.path", "missing"),
    "split-name": (
        _set(S + ("split", "fractions"), {"train": 0.5, "valid": 0.25, "test": 0.25}),
        "subsets.tiny-sto.split.fractions.valid",
        "did you mean 'val'",
    ),
    "split-sum": (
        _set(S + ("split", "fractions"), {"train": 0.5, "val": 0.25, "test": 0.5}),
        "subsets.tiny-sto.split.fractions",
        "sum to 1.25",
    ),
    "split-test": (
        _set(S + ("test_source",), {"name": "builtin"}),
        "subsets.tiny-sto.split",
        "must not include 'test'",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_value_names_the_key_and_a_fix(name):
    mutate, key, fragment = BAD[name]
    cfg = base()
    mutate(cfg)
    message = problems_of(cfg)
    assert message.startswith("the workflow config has 1 problem(s):"), message
    assert f"config key '{key}':" in message and "\n  fix: " in message, message
    assert fragment in message, message
    assert len(message.splitlines()) <= 3


def test_problem_lists_are_short_and_deduplicated():
    cfg = base()
    for i in range(15):
        cfg["teachers"][f"t{i}"] = {"model": "chgnet", "rows": 0}
    message = problems_of(cfg)
    assert message.startswith("the workflow config has 15 problem(s):")
    assert message.count("config key") == cc.MAX_MESSAGES and message.endswith("... and 5 more")
    cfg = base()
    cfg["runs"]["tiny-hessian"]["subset_overrides"] = {"tiny-sto": {"lr": 0.01}}
    cfg["runs"]["tiny-hessian"]["probe"] = "gauss"  # seen in the run and in its merged override: reported once
    fill_defaults(cfg, SCHEMA)
    assert len(semantic_problems(cfg)) == 1


def test_problem_functions_directly():
    cfg = base()
    assert schema_problems(cfg, SCHEMA) == [] and schema_problems(cfg, SCHEMA_PATH) == []
    fill_defaults(cfg, SCHEMA)
    assert semantic_problems(cfg) == []
    cfg["teachers"]["chgnet"]["rows"] = "all"
    assert semantic_problems(cfg) == [
        "config key 'teachers.chgnet.rows': 'all' is not valid: expected an integer "
        ">= 1 or 'full'\n  fix: give the number of Hessian rows stored per structure, "
        "or 'full'"
    ]
    assert [p.split(":")[0] for p in schema_problems(cfg, SCHEMA)] == ["config key 'teachers.chgnet.rows'"]


def test_accepted_values():
    cfg = base()
    cfg["teachers"]["chgnet"]["rows"] = "full"  # full Hessians: any rows_per_structure, projections
    cfg["teachers"]["mace"] = {"model": "mace-off:large", "rows": "full", "options": {"head": "default"}}
    cfg["teachers"]["emt"] = {"model": "ase:ase.calculators.emt:EMT", "rows": "full", "options": {"anything": 1}}
    cfg["runs"]["tiny-hessian"].update(rows_per_structure=50, row_weighting="projection", device="cuda:1")
    cfg["runs"]["tiny-hessian"]["student"]["avg_num_neighbors"] = "auto"
    cfg["runs"]["tiny-undistilled"].update(rows_per_structure=50)  # no Hessian term: rows do not matter
    cfg["subsets"]["tiny-sto"]["selectors"] = [{"id_list": {"file": "not-written-yet.txt"}}]  # data, not config
    cfg["evaluation"]["subset_protocol"] = {"tiny-sto": {"md": {"ensemble": "NVT", "steps": 5}}}
    assert problems_of(cfg) == ""


def test_sample_source(tmp_path, monkeypatch):
    """A `sample` source: its seeds file exists or is a workflow output under results/; its options are sampling
    settings (each checked by the sampler), teacher, dtype and device; it is never downloaded."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "seeds.extxyz").write_text("1\nProperties=species:S:1:pos:R:3\nCu 0 0 0\n")

    def with_source(**src):
        cfg = base()
        cfg["subsets"]["tiny-sto"]["source"] = {"name": "sample", "path": "seeds.extxyz", **src}
        return cfg

    good = {"teacher": "chgnet", "dtype": "float32", "device": "cpu", "supercells": [[1, 1, 1], [2, 2, 2]]}
    assert problems_of(with_source(options={**good, "seed_frames": True, "max_atoms": 40})) == ""
    assert problems_of(with_source(path="results/flagged/seeds.extxyz")) == ""  # made by an earlier rule
    where = "config key 'subsets.tiny-sto.source"
    for src, key, fragment in (
        ({"options": {"n_trajectorys": 2}}, ".options.n_trajectorys'", "did you mean 'n_trajectories'"),
        ({"options": {"teacher": "sevenet"}}, ".options.teacher'", "did you mean 'sevenn'"),
        ({"options": {"supercells": [[2, 2]]}}, ".options.supercells'", "[a, b, c] repetitions"),
        ({"options": {"seed_frames": "yes"}}, ".options.seed_frames'", "true or false"),
        ({"path": "nowhere.extxyz"}, ".path'", "does not exist and is not a workflow output under results/"),
        ({"url": "https://example.org/seeds.extxyz"}, ".url'", "never downloaded"),
    ):
        message = problems_of(with_source(**src))
        assert message.startswith("the workflow config has 1 problem(s):"), message
        assert f"{where}{key}:" in message and fragment in message and "\n  fix: " in message, message
    cfg = with_source()
    del cfg["subsets"]["tiny-sto"]["source"]["path"]
    assert "source.path': missing: source 'sample'" in problems_of(cfg)


def test_students_that_cannot_be_imported_keep_their_hyper_parameters_unchecked(monkeypatch):
    from hessdistill.students import registry

    monkeypatch.setitem(registry.STUDENTS, "ghost", ("hessdistill.students.no_such_module", "Ghost"))
    cfg = base()
    cfg["runs"]["tiny-hessian"]["student"] = {"arch": "ghost", "whatever": 1}
    assert problems_of(cfg) == ""
    assert "hessdistill.students.no_such_module" in cc._SKIPPED


# ---------------------------------------------------------------- the workflow (Snakemake dry runs)
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def snakemake(workdir, config, *args, timeout=300):
    """Dry-run the repository's Snakefile with `config` (a dict) and extra arguments; stdout + stderr."""
    pytest.importorskip("snakemake")
    cfg_path = Path(workdir) / f"config-{time.monotonic_ns()}.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    exe = str(SNAKEMAKE) if SNAKEMAKE.exists() else shutil.which("snakemake")
    cmd = [
        exe,
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(cfg_path),
        "-c",
        "1",
        "-n",
        *args,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return res.returncode, res.stdout + res.stderr


@pytest.mark.parametrize("name", ["rows-word", "teacher-typo", "override-key"])
def test_workflow_stops_at_start_with_a_short_message(name, tmp_path):
    mutate, key, _ = BAD[name]
    cfg = base()
    mutate(cfg)
    rc, out = snakemake(tmp_path, cfg)
    assert rc != 0, out
    assert f"config key '{key}':" in out and "fix:" in out, out
    assert len(out.strip().splitlines()) < 25, out
    assert not (tmp_path / "results").exists()


def test_workflow_sample_source_is_an_input_never_a_download(tmp_path):
    """The seeds file of a `sample` source is an input of prepare_subset (editing it reruns the subset), and no
    download_source job is made for it, present or missing."""
    (tmp_path / "seeds.extxyz").write_text("1\nProperties=species:S:1:pos:R:3\nCu 0 0 0\n")
    cfg = base()
    cfg["subsets"]["tiny-sto"]["source"] = {"name": "sample", "path": "seeds.extxyz", "options": {"teacher": "chgnet"}}
    rc, out = snakemake(tmp_path, cfg, "--until", "prepare_subset")
    assert rc == 0, out
    block = out[out.index("rule prepare_subset:") :]
    assert "input: seeds.extxyz" in block.split("\n\n")[0], out
    assert "download_source" not in out
    (tmp_path / "seeds.extxyz").unlink()  # missing: a config error (not a download), named by key
    rc, out = snakemake(tmp_path, cfg)
    assert rc != 0 and "config key 'subsets.tiny-sto.source.path'" in out and "download_source" not in out, out
    cfg["subsets"]["tiny-sto"]["source"]["path"] = "results/flagged/seeds.extxyz"  # to be made by an earlier rule
    rc, out = snakemake(tmp_path, cfg)
    assert rc != 0 and "MissingInputException" in out and "download_source" not in out, out


@pytest.mark.parametrize("value", ["true", "True"])
def test_workflow_accepts_use_gpu_from_the_command_line(value, tmp_path):
    rc, out = snakemake(tmp_path, base(), "--config", f"use_gpu={value}")
    assert rc == 0, out
    assert "train_run" in out


# ---------------------------------------------------------------- the disagreement evaluation's partners
def _with_disagreement(**protocol) -> dict:
    cfg = base()
    cfg["evaluation"]["evaluations"].append("disagreement")
    if protocol:
        cfg["evaluation"]["protocol"]["disagreement"] = protocol
    return cfg


def test_disagreement_partners_auto_and_listed():
    from hessdistill.workflow.params import disagreement_partners

    cfg = _with_disagreement()
    assert problems_of(cfg) == ""
    assert disagreement_partners(cfg, "tiny-sto", "chgnet", "tiny-hessian") == ["tiny-undistilled"]
    assert disagreement_partners(cfg, "tiny-sto", "chgnet", "tiny-undistilled") == ["tiny-hessian"]
    # a list names the committee; each run is compared with the others in it
    cfg = _with_disagreement(partners=["tiny-hessian", "tiny-undistilled"])
    assert problems_of(cfg) == ""
    assert disagreement_partners(cfg, "tiny-sto", "chgnet", "tiny-hessian") == ["tiny-undistilled"]


def test_disagreement_without_partners_names_the_key_and_the_fix():
    cfg = _with_disagreement()
    del cfg["runs"]["tiny-undistilled"]
    message = problems_of(cfg)
    assert message.startswith("the workflow config has 1 problem(s):"), message
    assert "config key 'evaluation.protocol.disagreement.partners'" in message
    assert "no other run of this subset and teacher" in message and "undistilled" in message.split("fix:")[1]
    cfg = _with_disagreement(partners=["tiny-hessian"])  # undistilled's list is only the hessian run: fine
    message = problems_of(cfg)  # the hessian run's list names only itself
    assert "run 'tiny-hessian'" in message and "the list names only it" in message, message
    assert "run 'tiny-undistilled'" not in message


def test_disagreement_partners_must_be_runs_trained_on_the_subset():
    cfg = _with_disagreement(partners=["tiny-hesian"])
    message = problems_of(cfg)
    assert "config key 'evaluation.protocol.disagreement.partners': unknown run 'tiny-hesian'" in message
    assert "did you mean 'tiny-hessian'" in message
    cfg = _with_disagreement()
    cfg["subsets"]["other"] = cfg["subsets"]["tiny-sto"]
    cfg["runs"]["tiny-undistilled"]["subsets"] = ["other"]
    cfg["evaluation"]["subset_protocol"] = {"tiny-sto": {"disagreement": {"partners": ["tiny-undistilled"]}}}
    message = problems_of(cfg)
    key = "config key 'evaluation.subset_protocol.tiny-sto.disagreement.partners'"
    assert f"{key}: partner run 'tiny-undistilled' is not trained on subset 'tiny-sto'" in message, message


def test_disagreement_options_and_teachers():
    cfg = _with_disagreement(threshold_eV_A="often")
    message = problems_of(cfg)
    assert "evaluation.protocol.disagreement.threshold_eV_A" in message, message
    cfg = _with_disagreement()
    cfg["evaluation"]["evaluate_teachers"] = ["test", "disagreement"]
    message = problems_of(cfg)
    assert "config key 'evaluation.evaluate_teachers'" in message and "teacher has none" in message, message
