"""Content hashes of the code behind a job, so that reruns follow real code changes and nothing else.

Snakemake's own ``code`` rerun trigger compares a ``script:`` file's *modification time* with the outputs:
a ``git checkout`` back and forth, or a ``touch``, would rerun a rule, and with it the teacher Hessians and
every training after them; and it does not see the library the script imports at all.  The workflow
therefore turns that trigger off (``rerun-triggers`` in ``profiles/default`` and ``profiles/slurm``) and
passes, as a param of each rule, :func:`code_hash` of the rule's script **and of every hessdistill module
it imports, transitively**.  The hash is taken over each module's syntax tree with docstrings removed, so
comments, docstrings and formatting change nothing, while any change to what the code does reruns the
rule (and only the rules whose code it is).

The import closure is found statically (``ast``): ``import``/``from ... import`` statements anywhere in a
module (function-level ones too), package ``__init__`` modules of every imported module, and string
constants naming a hessdistill module (the registries import their adapters lazily by name).

Standard library only: the Snakefile imports this on the submitting node, whose environment need only
have Snakemake.
"""

from __future__ import annotations

import ast
import hashlib
import os
from functools import cache
from pathlib import Path

PACKAGE = "hessdistill"
_ROOT = Path(__file__).resolve().parents[1]  # .../hessdistill (this file is core/codehash.py)


def _module_file(name: str) -> Path | None:
    """The source file of hessdistill module ``name`` (a package's ``__init__.py``), or None."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = _ROOT.joinpath(*parts[1:])
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``[a, a.b, a.b.c]``: importing a module runs its packages' ``__init__`` first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """hessdistill modules that the syntax tree of ``module`` imports (or names in a string constant)."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    logger_names = {
        id(a)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "getLogger"
        for a in node.args
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import submodule`
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith(PACKAGE + ".")
            and id(node) not in logger_names
        ):
            found.add(node.value)
    out = set()
    for name in found:
        if name.split(".")[0] == PACKAGE:
            out.update(m for m in _with_parents(name) if _module_file(m) is not None)
    return out


def _normalised(tree: ast.AST) -> str:
    """The syntax tree without docstrings, as text (comments and layout are not in the tree at all)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _parsed(path: str) -> tuple[str, str]:
    """(source, normalised tree) of a file, cached while the file is unchanged."""
    st = os.stat(path)
    return _parsed_cached(path, st.st_mtime_ns, st.st_size)


@cache
def _parsed_cached(path: str, mtime_ns: int, size: int) -> tuple[str, str]:
    src = Path(path).read_text(encoding="utf-8")
    return src, _normalised(ast.parse(src, filename=path))


def module_closure(entries) -> list[str]:
    """Sorted hessdistill module names imported, transitively, by ``entries`` (module names or file paths)."""
    todo: list[tuple[str, Path]] = []
    for e in entries:
        p = Path(e)
        if p.suffix == ".py" and p.is_file():
            todo.append((f"<script {p.name}>", p))
        else:
            todo += [(m, _module_file(m)) for m in _with_parents(str(e)) if _module_file(m) is not None]
    seen: dict[str, Path] = {}
    while todo:
        name, path = todo.pop()
        if name in seen:
            continue
        seen[name] = path
        tree = ast.parse(_parsed(str(path))[0], filename=str(path))
        for m in _imports(tree, name if not name.startswith("<") else PACKAGE, path.name == "__init__.py"):
            if m not in seen:
                todo.append((m, _module_file(m)))
    return sorted(seen)


def code_hash(entries) -> str:
    """sha256 (hex, 16 characters) over the normalised syntax trees of ``entries`` and their import closure.

    ``entries`` are hessdistill module names (``"hessdistill.jobs.label"``) or paths of scripts that import
    hessdistill.  Equal for code that differs only in comments, docstrings or formatting."""
    names = module_closure(entries)
    files = {n: _module_file(n) for n in names if not n.startswith("<")}
    files.update({f"<script {Path(e).name}>": Path(e) for e in entries if str(e).endswith(".py")})
    h = hashlib.sha256(b"hessdistill.core.codehash/v1\n")
    for name in sorted(files):
        h.update(name.encode() + b"\0" + _parsed(str(files[name]))[1].encode() + b"\0")
    return h.hexdigest()[:16]
