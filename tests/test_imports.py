"""pbtune's import graph: no cycles between modules or between packages, and no module
reaches into a private module (``_x``) of another package.

The graph is read from the source with `ast`, so it holds every import, those inside
functions and ``TYPE_CHECKING`` blocks too: an import that only runs later still ties the
two modules together.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "pbtune"
ROOT = "pbtune"

Graph = dict[str, set[str]]


def _module_name(path: Path) -> str:
    parts = [ROOT, *path.relative_to(SOURCE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    """Every module under src/pbtune by dotted name; a package is its ``__init__``."""
    return {_module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def _imports(name: str, path: Path, known: Iterable[str]) -> Iterator[str]:
    """The pbtune modules that ``name`` imports, anywhere in its file."""
    known = set(known)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == ROOT or alias.name.startswith(ROOT + "."):
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(name, is_package, node.module, node.level)
            if base != ROOT and not base.startswith(ROOT + "."):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                # ``from pbtune.x import y`` imports the module pbtune.x.y where there is one.
                yield submodule if submodule in known else base


def _absolute(name: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        assert module is not None
        return module
    package = name.split(".") if is_package else name.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _module_graph() -> Graph:
    modules = _modules()
    graph: Graph = {name: set() for name in modules}
    for name, path in modules.items():
        for target in _imports(name, path, modules):
            assert target in modules, f"{name} imports {target}, which is not in src/pbtune"
            if target != name:
                graph[name].add(target)
    return graph


def _package(module: str) -> str:
    """The first level below pbtune (``pbtune.worker``, ``pbtune._errors``), or the root."""
    return ".".join(module.split(".")[:2])


def _package_graph(modules: Graph) -> Graph:
    graph: Graph = {}
    for module, targets in modules.items():
        if module == ROOT:
            continue  # the root re-exports the whole API: it may import anything
        node = _package(module)
        graph.setdefault(node, set())
        graph[node] |= {_package(t) for t in targets if _package(t) != node}
    return graph


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one (Tarjan's algorithm),
    each as the nodes along it with the first repeated at the end."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_through(graph, min(component), component) for component in components]


def _cycle_through(graph: Mapping[str, set[str]], start: str, component: set[str]) -> list[str]:
    """The shortest way from ``start`` back to itself inside ``component``."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph.get(node, ())):
            if target == start:
                return [*paths[node], start]
            if target in component and target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def _describe(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(cycle) for cycle in cycles)


def _private_owner(module: str) -> str | None:
    """The package a private module belongs to (``pbtune.study`` for
    ``pbtune.study._study``); None for a public module."""
    parts = module.split(".")
    for depth, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:depth])
    return None


def _private_imports(graph: Graph) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            owner = _private_owner(target)
            if owner is not None and module != owner and not module.startswith(owner + "."):
                found.append(f"{module} -> {target}")
    return found


def test_no_import_cycle_between_modules() -> None:
    cycles = _cycles(_module_graph())
    assert not cycles, f"import cycles between modules:\n{_describe(cycles)}"


def test_no_import_cycle_between_packages() -> None:
    cycles = _cycles(_package_graph(_module_graph()))
    assert not cycles, f"import cycles between packages:\n{_describe(cycles)}"


def test_only_the_root_package_imports_the_root() -> None:
    """Inside pbtune, the API is reached through the subpackages: the root
    ``pbtune/__init__.py`` imports them all, so importing it from one is a cycle."""
    importers = sorted(m for m, targets in _module_graph().items() if ROOT in targets)
    assert not importers, f"modules that import the root package: {', '.join(importers)}"


def test_no_private_module_of_another_package_is_imported() -> None:
    """A package is used through its ``__init__``; its ``_x`` modules are its own.
    The root's private modules (``pbtune._errors``) are shared by every package."""
    found = _private_imports(_module_graph())
    assert not found, (
        f"{len(found)} imports of another package's private modules (import the name "
        "from the package's __init__ instead):\n" + "\n".join(found)
    )


OPTIONAL = ("torch", "lightning", "pytorch_lightning", "transformers", "tensorboard",
            "tensorboardX", "mlflow", "ray")
"""The libraries of pbtune's extras that only their own integration imports."""


def test_pbtune_imports_no_optional_library() -> None:
    """``import pbtune`` (and the CLI, and `pbtune.loggers`, whose loggers import their
    library when one is made) loads none of the heavy optional libraries."""
    code = ("import sys, pbtune, pbtune.cli, pbtune.loggers\n"
            f"print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_import_pbtune_loads_the_api_on_first_use() -> None:
    """``import pbtune`` loads neither SQLAlchemy nor NumPy (most of what an import took);
    every name of ``pbtune.__all__`` is there when first used, and so are the subpackages
    that importing them all at once used to bring along."""
    code = ("import sys, pbtune\n"
            "print(sorted(m for m in ('numpy', 'sqlalchemy') if m in sys.modules))\n"
            "print([n for n in pbtune.__all__ if getattr(pbtune, n, None) is None])\n"
            "from pbtune import Float, create_study\n"
            "print(pbtune.storages.Storage is pbtune.Storage, hasattr(pbtune, 'no_such'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines() == ["[]", "[]", "True False"]


# -- the checks themselves --------------------------------------------------------------------
def test_cycles_are_found_and_named() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": {"e"}}
    assert _cycles(graph) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_imports_are_resolved(tmp_path: Path) -> None:
    assert _absolute("pbtune.cli._run", False, "_format", 1) == "pbtune.cli._format"
    assert _absolute("pbtune.cli", True, "_main", 1) == "pbtune.cli._main"
    assert _absolute("pbtune.cli._run", False, "study", 2) == "pbtune.study"
    assert _absolute("pbtune.cli._run", False, None, 1) == "pbtune.cli"
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import os, pbtune.trial\n"
        "from pbtune.cli import _format as fmt, main\n"
        "if TYPE_CHECKING:\n    from pbtune.study._study import Study\n"
        "def f():\n    from . import _data\n"
    )
    known = {"pbtune.cli._format", "pbtune.dashboard._data"}
    assert sorted(set(_imports("pbtune.dashboard._m", source, known))) == [
        "pbtune.cli", "pbtune.cli._format", "pbtune.dashboard._data", "pbtune.study._study",
        "pbtune.trial",
    ]
    graph = {"pbtune.cli._run": {"pbtune.study._study", "pbtune._errors", "pbtune.cli._x"},
             "pbtune.study": {"pbtune.study._study"}}
    assert _private_imports(graph) == ["pbtune.cli._run -> pbtune.study._study"]
    assert _package_graph({"pbtune": {"pbtune.cli"}, "pbtune.cli._a": {"pbtune._errors"}}) == {
        "pbtune.cli": {"pbtune._errors"}
    }
