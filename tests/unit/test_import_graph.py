"""The project's import graph: imports flow one way (cli -> local -> stacks -> lambdas) and no module set imports
itself round a circle, type-checking imports included. Read from the source with ``ast``, so lazy imports inside
functions count too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the layers from top to bottom: a module may import its own layer and those below it, never one above
LAYERS = ("cli", "local", "stacks", "lambdas")
PACKAGES = (*LAYERS, "bench")
TOP_MODULES = ("app", "prompt_templates")


def project_modules(root: Path) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    for name in TOP_MODULES:
        modules[name] = root / f"{name}.py"
    return modules


def imported_names(module: str, path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line, candidate module names) per import statement; for ``from X import y`` both X and X.y are candidates,
    so importing a submodule through its package counts as importing the submodule."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield node.lineno, [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, [base, *(f"{base}.{alias.name}" for alias in node.names)]


def dependencies(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for _, candidates in imported_names(name, path):
            submodules = [c for c in candidates[1:] if c in modules]
            # "from pkg import submodule" depends on the submodule, not on everything the package re-exports
            deps.update(submodules or [c for c in candidates[:1] if c in modules])
        deps.discard(name)
        graph[name] = deps
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_imports_never_go_up_a_layer():
    # GIVEN every module of the four layers
    modules = project_modules(ROOT)
    # WHEN each import statement (module level, lazy or type-checking) is read
    upward = []
    for name, path in modules.items():
        layer = name.split(".")[0]
        if layer not in LAYERS:
            continue
        for line, candidates in imported_names(name, path):
            target = candidates[0].split(".")[0]
            if target in LAYERS and LAYERS.index(target) < LAYERS.index(layer):
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {candidates[0]}")
    # THEN none reaches a layer above its own (the CLI calls down, never the reverse)
    assert upward == []


def test_no_import_circles():
    # GIVEN the import graph of the whole project
    graph = dependencies(project_modules(ROOT))
    # WHEN its circles are searched THEN there are none
    assert circles(graph) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set(), "c": {"a", "b"}}, []),
    ],
)
def test_circle_search_finds_what_is_there(graph, expected):
    # GIVEN small graphs with and without a loop WHEN searched THEN exactly the loops are reported
    assert circles(graph) == expected


def test_import_reader_sees_lazy_relative_and_submodule_imports(tmp_path):
    # GIVEN a package whose module imports lazily, relatively and a submodule through its package
    package = tmp_path / "cli"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "x.py").write_text("def f():\n    from . import y\n    from local.emulator import paging\n")
    # WHEN its imports are read
    found = [candidates for _, candidates in imported_names("cli.x", package / "x.py")]
    # THEN the relative import resolves inside the package and the submodule is a candidate
    assert found == [["cli", "cli.y"], ["local.emulator", "local.emulator.paging"]]
