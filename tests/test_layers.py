"""The package's layers point one way (docs/DESIGN.md, "Layers"): an import that goes up, sideways between
the independent packages of one layer, or round in a circle fails here, naming the module and the import.

    core  ->  data | teachers | students  ->  training | evaluation | reporting  ->  jobs  ->  workflow  ->  api

Every import counts, function-level ones too (they hide a dependency, they do not remove it), and so do the
string constants naming a hessdistill module that the registries import lazily.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hessdistill
from hessdistill.core.codehash import _imports

ROOT = Path(hessdistill.__file__).resolve().parent

#: (rank, family): a module may import its own family and any family of a lower rank
LAYERS = {
    "core": (0, "core"),
    "data": (1, "data"),
    "teachers": (1, "teachers"),
    "students": (1, "students"),
    "training": (2, "training"),
    "evaluation": (2, "evaluation"),
    "reporting": (2, "reporting"),
    "jobs": (3, "jobs"),
    "workflow": (4, "workflow"),
}
API = (5, "api")  # the package itself, the command line and the user-facing names (calculator, deployed)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> tuple[int, str]:
    parts = module.split(".")
    return LAYERS.get(parts[1], API) if len(parts) > 1 else API


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found = _imports(tree, name, path.name == "__init__.py")
        # a module's own packages are imported with it: not a dependency of the module's code
        graph[name] = {m for m in found if m != name and not name.startswith(m + ".") and m != "hessdistill"}
    return graph


GRAPH = import_graph()


def test_every_module_has_a_layer():
    assert len(GRAPH) > 40
    unknown = [
        m
        for m in GRAPH
        if m.count(".") >= 1
        and m.split(".")[1] not in LAYERS
        and m not in ("hessdistill.cli", "hessdistill.calculator", "hessdistill.deployed")
    ]
    assert not unknown, f"modules outside every layer (add them to a package or to LAYERS): {unknown}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module):
    rank, family = layer(module)
    bad = []
    for target in sorted(GRAPH[module]):
        t_rank, t_family = layer(target)
        if t_rank > rank or (t_rank == rank and t_family != family):
            bad.append(f"{target} (layer {t_family}, rank {t_rank})")
    assert not bad, f"{module} (layer {family}, rank {rank}) imports upward or sideways: {bad}"


def test_no_circular_imports():
    """No cycle in the module graph (function-level imports included): a cycle means two modules that cannot be
    read, tested or moved apart."""
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(GRAPH.get(m, ())):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)
    assert not cycles, "circular imports: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_private_names_across_modules():
    """``from m import _name`` reaches into another module's internals: make the name public (and documented)
    where it belongs, or move the code."""
    scripts = sorted((ROOT.parents[1] / "workflow_scripts").glob("*.py"))
    bad = []
    for path in sorted(ROOT.rglob("*.py")) + scripts:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            ours = node.level if isinstance(node, ast.ImportFrom) else 0
            if isinstance(node, ast.ImportFrom) and not ours:
                ours = (node.module or "").split(".")[0] == "hessdistill"
            if isinstance(node, ast.ImportFrom) and ours:
                names = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if names:
                    bad.append(
                        f"{path.name if path in scripts else module_name(path)}: from {'.' * node.level}{node.module or ''} import {names}"
                    )
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)
