"""envs/*.yaml (conda environments per rule family, for --sdm conda on clusters) agree with constraints.txt,
keep mace-torch and sevenn apart, and every workflow rule names one."""

import re
from pathlib import Path

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
