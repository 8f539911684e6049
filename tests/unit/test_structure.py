"""The package structure, read from the source: imports run one way, no cycles, small modules.

Every module of every package that pyproject's ``package-dir`` maps is parsed (ast, nothing imported). An
import counts wherever it is written, inside functions too; only those under ``if TYPE_CHECKING:`` do not
(they never run). A module importing its own ancestor package is no edge (Python imports the package first
anyway). The rules (docs/architecture.md):

* no import cycle between modules, and none between packages;
* nothing imports `autotts.server` (only the command line, `autotts.cli`, may);
* `autotts.controllers` imports nothing else of autotts; `autotts.sandbox` and `autotts.engines` import only
  the controllers;
* no module is over 400 lines, except the numba kernels (offline/fast/kernels.py).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400
LONG_ALLOWED = {"autotts.offline.fast.kernels"}
#: package → the autotts packages it may import (None: any); everything else is a violation
MAY_IMPORT: dict[str, set[str] | None] = {
    "autotts.controllers": set(),
    "autotts.sandbox": {"autotts.controllers"},
    "autotts.engines": {"autotts.controllers"},
    "autotts.cli": None,
}


def find_modules(root: Path) -> dict[str, Path]:
    """Module name → file, for every package `root`/pyproject.toml maps in package-dir."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    modules = {}
    for package, folder in config["tool"]["setuptools"]["package-dir"].items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(root / folder).with_suffix("").parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).split(".")[-1] == "TYPE_CHECKING":
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the autotts modules it imports (resolved to the nearest module that exists)."""

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        skip, edges = _type_checking_only(tree), set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [known(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                source = ".".join([*base, *([node.module] if node.module else [])])
                # `from a import b`: module a.b when it is one, else names of a
                targets = [known(f"{source}.{alias.name}") if f"{source}.{alias.name}" in modules else known(source)
                           for alias in node.names]
            else:
                continue
            edges.update(t for t in targets if t and t != name and not name.startswith(t + "."))
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(package_of(module), set()).update(package_of(t) for t in targets)
    return {p: targets - {p} for p, targets in packages.items()}


MODULES = find_modules(ROOT)
GRAPH = import_graph(MODULES)


def test_the_checker_reads_the_whole_layout() -> None:
    assert {package_of(m) for m in MODULES} >= {"autotts.controllers", "autotts.offline", "autotts.discovery",
                                                "autotts.server", "autotts.engines", "autotts.sandbox",
                                                "autotts.cli"}
    assert "autotts.engines.base" in GRAPH["autotts.engines.backends"]
    assert "autotts.offline.store" in GRAPH["autotts.offline.evaluate"]


def test_no_import_cycle_between_modules() -> None:
    assert cycles(GRAPH) == []


def test_no_import_cycle_between_packages() -> None:
    assert cycles(package_graph(GRAPH)) == []


def test_nothing_but_the_command_line_imports_the_server() -> None:
    wrong = sorted(f"{m} imports {t}" for m, targets in GRAPH.items() for t in targets
                   if package_of(t) == "autotts.server" and package_of(m) not in ("autotts.server", "autotts.cli"))
    assert wrong == []


@pytest.mark.parametrize("package", sorted(p for p, allowed in MAY_IMPORT.items() if allowed is not None))
def test_lower_packages_import_only_what_is_below_them(package) -> None:
    allowed = MAY_IMPORT[package] | {package}
    wrong = sorted(f"{m} imports {t}" for m, targets in GRAPH.items() if package_of(m) == package
                   for t in targets if package_of(t) not in allowed)
    assert wrong == []


def test_nothing_imports_the_command_line() -> None:
    assert sorted(f"{m} imports {t}" for m, targets in GRAPH.items() for t in targets
                  if package_of(t) == "autotts.cli" and package_of(m) != "autotts.cli") == []


def test_no_module_over_400_lines() -> None:
    long = {m: n for m, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert {m: n for m, n in long.items() if m not in LONG_ALLOWED} == {}


def test_the_checker_finds_cycles_counts_function_imports_and_skips_type_checking(tmp_path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.setuptools]\npackage-dir = { "demo.pkg" = "pkg" }\n')
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .c import g\n")
    (pkg / "c.py").write_text("from demo.pkg.a import x\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n")
    graph = import_graph(find_modules(tmp_path))
    assert graph["demo.pkg.b"] == {"demo.pkg.c"} and graph["demo.pkg.d"] == set()
    assert cycles(graph) == [["demo.pkg.a", "demo.pkg.b", "demo.pkg.c"]]
