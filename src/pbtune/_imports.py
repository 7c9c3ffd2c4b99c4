"""Importing the user's code by reference: ``module:name`` or ``path/to/file.py:name``.

One place for it, used by stored fitness functions, training entries and user strategies;
and the check that a script does not run a study while it is being imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any

from pbtune._errors import ConfigError

UNGUARDED_EXIT = 87
"""The exit code of a worker process that found the script it imports running a study."""

_loading: list[Path] = []  # the files `import_object` is executing now (innermost last)


def refuse_study_while_imported(action: str) -> None:
    """Refuse to ``action`` (create, load or run a study) while the user's script is being
    imported to find a function in it, which is what a script without an
    ``if __name__ == "__main__":`` guard does in every worker process.

    A worker process started by `multiprocessing` ("spawn") imports the main script
    before it runs: it exits at once with `UNGUARDED_EXIT`, quietly, and the run that
    started it explains, once (`unguarded_script`). A script imported by
    `import_object` (``pbtune run script.py:train``, ``pbtune worker --entry``) gets a
    `ConfigError`.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # Not sys.exit: a worker forked by the forkserver turns any SystemExit into
        # exit code 1. What the script printed so far is flushed first.
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        os._exit(UNGUARDED_EXIT)
    if _loading:
        raise ConfigError(unguarded_script(_loading[-1], action))


def unguarded_script(script: Path | str | None, action: str = "creates or runs a study"
                     ) -> str:
    """What to write when ``script`` runs a study at import time."""
    name = f"{str(script)!r}" if script else "your script"
    return (
        f"{name} {action} when it is imported, and pbtune's worker processes import it "
        "to find your training function, so each of them would run the study again. Put "
        "the study's code at the end of the script under the main guard, with the "
        "training function above it at the top level:\n\n"
        "    def train(trial): ...\n\n"
        "    if __name__ == \"__main__\":\n"
        "        study = pbtune.create_study(..., load_if_exists=True)\n"
        "        study.optimize(train, workers=2)\n\n"
        "(or run the workers as threads: study.optimize(train, backend=\"thread\")). "
        "Nothing recorded was lost: run the script again."
    )


def object_ref(obj: Any) -> str:
    """``module:qualname`` of a function or class, for the record."""
    module = getattr(obj, "__module__", None) or "?"
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}:{qualname}"


def import_object(ref: str, what: str) -> Any:
    """Import ``module:qualname`` (a module path) or ``path/to/file.py:name``."""
    if not isinstance(ref, str) or ":" not in ref:
        raise ConfigError(f"{what} must be given as 'module:name' or 'file.py:name', got {ref!r}")
    target, _, qualname = ref.rpartition(":")
    if target.endswith(".py") or "/" in target:
        module = _load_file(Path(target), what)
    else:
        try:
            module = importlib.import_module(target)
        except Exception as error:  # the user's module may fail in any way while importing
            raise ConfigError(f"cannot import {what} {ref!r}: {error!r}") from None
    obj: Any = module
    try:
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigError(f"cannot import {what} {ref!r}: {target!r} has no {qualname!r}") from None
    return obj


def _load_file(path: Path, what: str) -> Any:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"{what}: no such file {str(path)!r}")
    module_name = "pbtune_entry_" + "".join(c if c.isalnum() else "_" for c in path.stem)
    if module_name in sys.modules and getattr(sys.modules[module_name], "__file__", None) == str(
        path
    ):
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{what}: cannot load {str(path)!r} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent))
    _loading.append(path)
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        del sys.modules[module_name]
        raise  # pbtune's own advice (a study run at import time) says it best
    except Exception as error:
        del sys.modules[module_name]
        raise ConfigError(f"{what}: importing {str(path)!r} failed: {error!r}") from error
    finally:
        _loading.pop()
    return module
