"""docs/paper-fidelity.md is the specification: every `CFG run|eval|path ... = value` check it names holds in
configs/paper-{spice,mptrj,md22}.yaml, so the document and the configurations cannot drift apart."""

import re
from pathlib import Path

import pytest
import yaml

from hessdistill.workflow.params import combos, evaluation_protocol, run_config

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "paper-fidelity.md"
CHECK = re.compile(r"`(spice|mptrj|md22) (run|eval|path) (\S+) ?([^`=]*?)\s*=\s*([^`]+)`")


def configs():
    return {n: yaml.safe_load((ROOT / "configs" / f"paper-{n}.yaml").read_text()) for n in ("spice", "mptrj", "md22")}


def checks():
    return [m.groups() for m in CHECK.finditer(DOC.read_text())]


def dig(d, path: str):
    for k in path.split(".") if path else []:
        assert isinstance(d, dict) and k in d, f"no key {k!r} on the way to {path!r}"
        d = d[k]
    return d


def targets(cfg, kind, where):
    """The dicts a check applies to: one run for one subset (or every one for '*'), a protocol, or the config."""
    if kind == "path":
        return [(where, cfg)]
    subset, _, name = where.partition("/")
    if kind == "eval":
        subsets = list(cfg["subsets"]) if subset == "*" else [subset]
        return [(f"{s}/{name}", evaluation_protocol(cfg, s, name)) for s in subsets]
    trained = [(s, r) for s, _, r in combos(cfg)]
    pairs = [(s, r) for s, r in trained if subset in ("*", s) and name in ("*", r)]
    assert pairs, f"{where}: no such subset/run is trained"
    return [(f"{s}/{r}", run_config(cfg, s, r)) for s, r in pairs]


def test_the_document_names_checks_for_every_configuration():
    found = checks()
    assert len(found) >= 80
    assert {c[0] for c in found} == {"spice", "mptrj", "md22"}


@pytest.mark.parametrize("check", checks(), ids=lambda c: " ".join(x for x in c if x)[:90])
def test_each_paper_setting_is_in_the_paper_config(check):
    name, kind, where, key, value = check
    cfg = configs()[name]
    if kind == "path":  # `spice path a.b.c = v`: the path is the key
        key, where = where, ""
    want = yaml.safe_load(value)
    for label, d in targets(cfg, kind, where):
        got = dig(d, key.strip())
        if isinstance(want, float) or isinstance(got, float):
            assert float(got) == pytest.approx(float(want)), (name, label, key, got, want)
        else:
            assert got == want, (name, label, key, got, want)


@pytest.mark.parametrize(
    "run,count",
    [
        ("gemnet-hessian", 672_918),
        ("gemnet-hessian-283k", 283_702),
        ("gemnet-hessian-112k", 111_622),
        ("gemnet-hessian-49k", 48_622),
    ],
)
def test_size_sweep_students_have_the_papers_parameter_counts(run, count):
    from hessdistill.students.registry import build_student

    student = dict(run_config(configs()["spice"], "monomers", run)["student"])
    model = build_student(student)
    assert sum(p.numel() for p in model.parameters()) == count
