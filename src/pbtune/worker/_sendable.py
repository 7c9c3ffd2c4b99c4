"""Whether a function can reach worker processes, checked before any starts.

Worker processes are started fresh ("spawn"): a function travels by reference (its
module and name) and each worker imports it. A nested function or a lambda has no such
reference; a function of the script being run (``__main__``) is found only if the script
defines it at import time, not under ``if __name__ == "__main__":`` (which workers do not
run). Either way every worker would fail with a pickling error of its own; refuse once.
"""

from __future__ import annotations

import ast
import inspect
import os
import pickle
import sys
from typing import Any

from pbtune._errors import ConfigError

_THREADS = 'or run the workers as threads: study.optimize(train, backend="thread")'


def check_sendable(obj: Any, what: str = "the training function") -> None:
    """Raise `ConfigError` if worker processes could not import ``obj``."""
    name = getattr(obj, "__qualname__", None) or repr(obj)
    try:
        pickle.dumps(obj)
    except Exception as error:
        where = ("it is a lambda" if name.endswith("<lambda>")
                 else "it is defined inside another function" if "<locals>" in name
                 else f"{error}")
        raise ConfigError(
            f"{what} {name!r} cannot be sent to worker processes: {where}. Worker processes "
            "import it by its module and name, so define it at the top level of a module or "
            f"script (not inside a function, not a lambda), {_THREADS}"
        ) from None
    if getattr(obj, "__module__", None) != "__main__" or not callable(obj):
        return
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    if script is None or not os.path.isfile(script):  # `python -c`, `python - < x.py`
        raise ConfigError(
            f"{what} {name!r} is defined in an interactive session, a notebook or a "
            "script read from stdin, which worker processes cannot import: save it in a "
            f".py file and run that (or import it from there), {_THREADS}"
        )
    top = name.split(".")[0]
    try:
        with open(script, encoding="utf-8") as source:
            defined = names_defined_on_import(ast.parse(source.read()))
    except (OSError, SyntaxError, ValueError):
        return  # cannot tell: the workers' own errors will say
    if top not in defined:
        raise ConfigError(
            f"{what} {name!r} is defined under `if __name__ == \"__main__\":` in "
            f"{script!r}; worker processes import the script without running that block, "
            "so they cannot find it. Define it at the top level of the script, above the "
            f"guard, {_THREADS}"
        )


def names_defined_on_import(module: ast.Module) -> set[str]:
    """The names a module binds when imported (not run as ``__main__``): top-level
    definitions, assignments and imports, and those inside top-level if/try/with blocks,
    except the body of ``if __name__ == "__main__":``."""
    names: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.If):
                if not _is_main_guard(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, (ast.Try, ast.With, ast.For, ast.While)):
                for block in ("body", "orelse", "finalbody"):
                    visit(getattr(node, block, []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(module.body)
    return names


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return (any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides))


def check_takes_trial(fn: Any, what: str = "the training function") -> None:
    """Raise `ConfigError` if ``fn`` cannot be called with one argument, the trial (a
    mistake every trial would otherwise fail on, once per member)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to check
    try:
        signature.bind(None)
    except TypeError:
        name = getattr(fn, "__qualname__", None) or repr(fn)
        raise ConfigError(
            f"{what} {name!r} must take one argument, the pbtune.Trial, but its signature is "
            f"{name.rpartition('.')[2]}{signature}: write it as `def train(trial): ...` and "
            "read trial.params, trial.start_step, trial.end_step, trial.checkpoint_dir"
        ) from None
