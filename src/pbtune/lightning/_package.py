"""Which Lightning a model belongs to (``lightning.pytorch`` or the standalone
``pytorch_lightning``), and keeping Lightning's INFO lines out of a trial's output.

The two packages hold the same code under two names, and a Trainer only takes the
modules and callbacks of its own package, so pbtune builds its Trainer and its callback
from the package of the user's module.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from pbtune._errors import ConfigError

PACKAGES = {"lightning": "lightning.pytorch", "pytorch_lightning": "pytorch_lightning"}
INSTALL = "pip install 'pbtune[lightning]'"


def installed() -> list[str]:
    """The Lightning packages that can be imported here, ``lightning.pytorch`` first."""
    return [name for top, name in PACKAGES.items() if importlib.util.find_spec(top) is not None]


def package_of(model: Any) -> ModuleType:
    """``lightning.pytorch`` or ``pytorch_lightning``: the package whose
    ``LightningModule`` ``model`` is. Raises `pbtune.ConfigError` for anything else."""
    for cls in type(model).__mro__:
        if cls.__name__ == "LightningModule" and cls.__module__.split(".")[0] in PACKAGES:
            top = cls.__module__.split(".")[0]
            package = importlib.import_module(PACKAGES[top])
            if isinstance(model, package.LightningModule):
                return package
    raise ConfigError(
        f"pbtune.lightning.fit trains a LightningModule, got {type(model).__qualname__}: "
        "subclass lightning.pytorch.LightningModule (import lightning as L; "
        "class Model(L.LightningModule): ...)"
    )


def fabric_of(package: ModuleType) -> str:
    """The name of the Fabric package that goes with ``package`` (its loggers' root)."""
    return "lightning.fabric" if package.__name__.startswith("lightning.") else "lightning_fabric"


_quiet_lock = threading.Lock()
_quiet_users: dict[str, int] = {}  # logger name -> trials in this process that quiet it
_quiet_saved: dict[str, int] = {}  # logger name -> its level before the first of them


@contextmanager
def quiet(package: ModuleType) -> Iterator[None]:
    """Lightning's INFO lines off ("GPU available", tips, "Restoring states", "`Trainer.fit`
    stopped") while a trial builds and runs its Trainer; warnings still show.

    Trials that run in threads of one process share the loggers: the first to enter
    turns one down, the last to leave restores its level."""
    names = [package.__name__, fabric_of(package)]
    with _quiet_lock:
        for name in names:
            if _quiet_users.get(name, 0) == 0:
                _quiet_saved[name] = logging.getLogger(name).level
                logging.getLogger(name).setLevel(logging.WARNING)
            _quiet_users[name] = _quiet_users.get(name, 0) + 1
    try:
        yield
    finally:
        with _quiet_lock:
            for name in names:
                _quiet_users[name] -= 1
                if _quiet_users[name] == 0:
                    logging.getLogger(name).setLevel(_quiet_saved.pop(name))
