"""Importing the user's code by reference: ``module:name`` or ``path/to/file.py:name``.

One place for it, used by stored fitness functions, training entries and user strategies.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from pbtune._errors import ConfigError


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
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise ConfigError(f"{what}: importing {str(path)!r} failed: {error!r}") from error
    return module
