"""envs/*.yaml (conda environments per rule family, for --sdm conda on clusters) agree with constraints.txt,
keep mace-torch and sevenn apart, and every workflow rule names one."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def _env_pins(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    out = {}
    for spec in pip:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", spec)
        assert m, f"{path.name}: {spec!r} is not pinned with =="
        out[m.group(1).lower()] = m.group(2)
    return out


def test_every_env_pin_matches_constraints():
    pins = _constraints()
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert [p.name for p in envs] == ["core.yaml", "teacher-mace.yaml", "teacher.yaml"]
    for path in envs:
        env_pins = _env_pins(path)
        assert env_pins["torch"] == "2.13.0"
        for name, version in env_pins.items():
            assert name in pins, f"{path.name}: {name} is not in constraints.txt"
            assert pins[name] == version, f"{path.name}: {name}=={version} but constraints.txt pins {pins[name]}"


def test_mace_and_sevenn_live_in_different_envs():
    teacher, mace, core = (_env_pins(ROOT / "envs" / n) for n in ("teacher.yaml", "teacher-mace.yaml", "core.yaml"))
    assert "sevenn" in teacher and "chgnet" in teacher and "mace-torch" not in teacher
    assert "mace-torch" in mace and "sevenn" not in mace
    assert not {"sevenn", "chgnet", "mace-torch"} & set(core)
    # what the library itself needs is in every env
    for env in (teacher, mace, core):
        assert {"numpy", "scipy", "ase", "h5py", "torch-geometric", "vesin", "pyyaml"} <= set(env)


def test_every_rule_names_a_conda_env():
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        n_rules = len(re.findall(r"^\s*rule(?: \w+)?:", text, flags=re.M))
        n_conda = len(re.findall(r"^\s*conda:", text, flags=re.M))
        assert n_conda == n_rules, f"{smk.name}: {n_rules} rules but {n_conda} conda: directives"


# ---------------------------------------------------------------- which environment a job gets (hessdistill.workflow.envs)
def _matrix(model, arch, evaluations=("test", "vibrations")):
    return {
        "subsets": {"s": {}},
        "teachers": {"t": {"model": model}},
        "runs": {"r": {"student": {"arch": arch}}},
        "evaluation": {"evaluations": list(evaluations)},
    }


def test_a_mace_student_of_chgnet_is_evaluated_where_both_are_installed():
    from hessdistill.workflow.envs import check_environments, environment, evaluation_environment

    cfg = _matrix("chgnet", "mace")
    check_environments(cfg, cfg["evaluation"]["evaluations"])
    for ev in ("vibrations", "test", "speed"):
        env = evaluation_environment(cfg, "s", "t", "r", ev)
        assert env == "teacher-mace.yaml"
        assert {"mace-torch", "chgnet"} <= set(_env_pins(ROOT / "envs" / env))
    # the teacher's own jobs and the student's training keep their environments
    assert evaluation_environment(cfg, "s", "t", None, "vibrations") == "teacher.yaml"
    assert environment(teacher_model="chgnet") == "teacher.yaml"
    assert environment(student_arch="mace") == "teacher-mace.yaml"


def test_environments_of_students_other_than_mace_are_the_teachers():
    from hessdistill.workflow.envs import environment, evaluation_environment

    for model, env in (
        ("chgnet", "teacher.yaml"),
        ("sevenn", "teacher.yaml"),
        ("mace-off:large", "teacher-mace.yaml"),
        ("ase:ase.calculators.emt:EMT", "teacher.yaml"),
    ):
        cfg = _matrix(model, "painn")
        assert evaluation_environment(cfg, "s", "t", "r", "vibrations") == env
        assert evaluation_environment(cfg, "s", "t", "r", "test") == env
        assert environment(teacher_model=model) == env
    assert environment(student_arch="painn") == "core.yaml"
    assert evaluation_environment(_matrix("mace-mp:medium", "mace"), "s", "t", "r", "relax") == "teacher-mace.yaml"


def test_every_environment_choice_names_an_env_file():
    from hessdistill.workflow.envs import ENVIRONMENTS, student_environments, teacher_environments

    assert sorted(ENVIRONMENTS) == sorted(p.name for p in (ROOT / "envs").glob("*.yaml"))
    for model in ("chgnet", "sevenn", "mace-off:large", "mace:/m.model", "ase:a:B", "torch:m:f"):
        assert set(teacher_environments(model)) <= set(ENVIRONMENTS)
        for env in teacher_environments(model):  # what each teacher needs is in every env said to host it
            pins = _env_pins(ROOT / "envs" / env)
            need = {"chgnet": "chgnet", "sevenn": "sevenn", "mace-off": "mace-torch", "mace": "mace-torch"}
            assert need.get(model.split(":")[0], "ase") in pins
    assert all("mace-torch" in _env_pins(ROOT / "envs" / e) for e in student_environments("mace"))


def test_a_mace_student_of_sevenn_fails_at_start_naming_run_teacher_and_fix():
    from hessdistill.workflow.config_check import ConfigError
    from hessdistill.workflow.envs import check_environments, evaluation_environment

    cfg = _matrix("sevenn", "mace")
    with pytest.raises(ConfigError) as exc:
        check_environments(cfg, ["test", "vibrations"])
    msg = str(exc.value)
    assert "runs.r" in msg and "teachers.t" in msg and "'sevenn'" in msg and "'mace'" in msg and "fix:" in msg
    assert "['vibrations']" in msg
    # evaluations that load only the student run in the student's environment
    check_environments(cfg, ["test", "md"])
    assert evaluation_environment(cfg, "s", "t", "r", "test") == "teacher-mace.yaml"
    assert evaluation_environment(cfg, "s", "t", "r", "vibrations") is None


def test_the_workflow_checks_environments_at_start():
    text = (ROOT / "rules" / "common.smk").read_text()
    assert "check_environments(config, EVALUATIONS)" in text
    evaluate = (ROOT / "rules" / "evaluate.smk").read_text()
    assert evaluate.count("evaluation_env\n") == 2  # the four evaluation rules (two loops); teacher_minima: teacher_env


def test_the_disagreement_evaluation_gets_an_environment_with_every_partners_student():
    """It loads the run's student and its partners' (no teacher): a MACE partner of a PaiNN run needs mace-torch,
    even with a SevenNet teacher (whose environment has no mace-torch)."""
    from hessdistill.workflow.envs import evaluation_environment

    cfg = _matrix("sevenn", "painn", evaluations=("test", "disagreement"))
    cfg["runs"]["m"] = {"student": {"arch": "mace"}}
    assert evaluation_environment(cfg, "s", "t", "r", "disagreement") == "teacher-mace.yaml"
    assert evaluation_environment(cfg, "s", "t", "m", "disagreement") == "teacher-mace.yaml"
    assert evaluation_environment(cfg, "s", "t", "r", "test") == "teacher.yaml"
    cfg["runs"]["m"] = {"student": {"arch": "schnet"}}
    assert evaluation_environment(cfg, "s", "t", "r", "disagreement") == "core.yaml"
