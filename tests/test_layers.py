"""The import rules of docs/ARCHITECTURE.md, read from the source: every `import` of every module of
harness/, reports/ and servers/ (function-level ones included) goes to its own package or a layer the table
allows, and no two modules import each other, however indirectly."""

import ast
import os
from typing import Dict, List, Set, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: package -> the project packages it may import (besides itself). Lower layers first.
ALLOWED: Dict[str, Set[str]] = {
    "servers": set(),
    "harness": set(),  # harness/__init__.py: __version__ and PROJECT_ROOT
    "harness.model": {"harness"},
    "harness.plugin_hooks": set(),  # the plugin's hookspec: imports nothing
    "harness._platform": {"harness", "harness.model"},
    "harness.env": {"harness", "harness.model", "harness._platform", "harness.verdict", "servers"},
    "harness.verdict": {"harness", "harness.model", "servers"},
    "harness.catalog": {"harness", "harness.model"},
    "harness.adapters": {"harness", "harness.model", "servers"},
    "harness.capsule": {"harness", "harness.model"},
    "harness.run": {
        "harness",
        "harness.model",
        "harness._platform",
        "harness.env",
        "harness.verdict",
        "harness.adapters",
        "harness.capsule",
        "servers",
    },
    "harness.campaign": {
        "harness",
        "harness.model",
        "harness._platform",
        "harness.env",
        "harness.verdict",
        "harness.catalog",
        "harness.adapters",
        "harness.run",
        "servers",
    },
    "reports": {"harness", "harness.model", "harness.verdict"},
}
#: the faces: they may import every layer, and nothing may import them
FACES = ("harness.cli", "harness.plugin")


def _modules() -> Dict[str, str]:
    """{dotted module name: path} for every module of the three packages."""
    found: Dict[str, str] = {}
    for top in ("harness", "reports", "servers"):
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d not in {"__pycache__", "templates"}]
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return found


MODULES = _modules()


def _package(module: str) -> str:
    """The layer a module belongs to: the longest ALLOWED / FACES key that is it or contains it."""
    keys = sorted([*ALLOWED, *FACES], key=len, reverse=True)
    for key in keys:
        if module == key or module.startswith(key + "."):
            return key
    raise AssertionError(f"{module} belongs to no layer: add it to ALLOWED in tests/test_layers.py")


def _imports(module: str, path: str) -> List[Tuple[str, int]]:
    """(imported project module, line) for every import in the file, resolved to a module of MODULES."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    is_pkg = path.endswith("__init__.py")
    here = module if is_pkg else module.rpartition(".")[0]
    out: List[Tuple[str, int]] = []
    for node in ast.walk(tree):
        names: List[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in names:
            found = name
            while found and found not in MODULES:
                found = found.rpartition(".")[0]
            if found:
                out.append((found, node.lineno))
    return out


def test_every_module_belongs_to_a_layer() -> None:
    assert len(MODULES) > 60
    for module in MODULES:
        _package(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_only(module: str) -> None:
    layer = _package(module)
    bad = []
    for target, line in _imports(module, MODULES[module]):
        other = _package(target)
        if other == layer:
            continue
        if other in FACES:
            bad.append(f"line {line}: {target} is a face ({other}); nothing imports it")
        elif layer not in FACES and other not in ALLOWED[layer]:
            bad.append(f"line {line}: {layer} may not import {target} ({other})")
    assert not bad, f"{module}:\n" + "\n".join(bad)


def test_no_import_cycle() -> None:
    graph = {m: {t for t, _ in _imports(m, p) if t != m} for m, p in MODULES.items()}
    # a package's __init__ is imported by its submodules implicitly: that edge is not a cycle
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_no_module_shadows_the_stdlib() -> None:
    import sys  # noqa: PLC0415

    stdlib = set(getattr(sys, "stdlib_module_names", ())) or {"inspect", "bisect", "platform", "signal"}
    clashes = [m for m in MODULES if m.rpartition(".")[2] in stdlib and "." in m]
    assert not clashes, clashes
