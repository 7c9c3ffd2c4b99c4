"""The ``loggers:`` of a study file (`pbtune run --config`), made into callbacks.

Example::

    loggers:
      - {type: tensorboard, log_dir: runs, per: member}
      - {type: mlflow, tracking_uri: "sqlite:///mlflow.db"}

Reading the file checks each logger's type and settings (`logger_specs`); the loggers
are made (`LoggerSpec.make`, which imports the library and may open a database) only by
the commands that run trials, so `pbtune create` needs neither library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbtune._errors import ConfigError
from pbtune._imports import import_object
from pbtune.loggers._mlflow import MLflow
from pbtune.loggers._tensorboard import TensorBoard

Logger = Callable[..., object]

SETTINGS: Mapping[str, tuple[str, ...]] = {
    "tensorboard": ("log_dir", "per"),
    "mlflow": ("tracking_uri", "experiment"),
}
"""The logger types a study file names, and the settings each takes."""

_EXAMPLE = "[{type: tensorboard, log_dir: runs}, {type: mlflow, tracking_uri: sqlite:///mlflow.db}]"


@dataclass(frozen=True)
class LoggerSpec:
    """One checked entry of ``loggers:``: its ``type`` and its other settings."""

    kind: str
    settings: dict[str, Any] = field(default_factory=dict)

    def make(self, base: Path | None = None) -> Logger:
        """The logger; a relative ``log_dir`` (or ``file.py`` of your own class) is taken
        from ``base`` (the study file's folder), else from the current folder."""
        settings = dict(self.settings)
        if self.kind == "tensorboard":
            if base is not None and isinstance(settings.get("log_dir"), str):
                settings["log_dir"] = base / Path(settings["log_dir"]).expanduser()
            return TensorBoard(**settings)
        if self.kind == "mlflow":
            return MLflow(**settings)
        target, _, name = self.kind.rpartition(":")
        if base is not None and target.endswith(".py") and not Path(target).is_absolute():
            target = str(base / target)  # a file beside the study file
        made = import_object(f"{target}:{name}", "logger")
        try:
            logger = made(**settings)
        except TypeError as error:
            raise ConfigError(f"logger {self.kind!r}: {error}") from None
        if not callable(logger):
            raise ConfigError(f"logger {self.kind!r} made {logger!r}, which is not callable")
        return logger  # type: ignore[no-any-return]


def logger_specs(data: Any) -> list[LoggerSpec]:
    """Check a study file's ``loggers``: a list of mappings with a ``type``
    (``tensorboard``, ``mlflow``, or ``module:Class`` for your own callback class), one
    such mapping, or a type's name alone. Nothing is imported or opened."""
    if data is None:
        return []
    items = [data] if isinstance(data, (Mapping, str)) else data
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"'loggers' must be a list like {_EXAMPLE}, got {data!r}")
    return [_spec(item) for item in items]


def loggers_from_dict(data: Any, base: Path | None = None) -> list[Logger]:
    """The loggers of a study file's ``loggers`` (see `logger_specs`), made.

    Example::

        loggers_from_dict([{"type": "tensorboard", "log_dir": "runs"}])
    """
    return [spec.make(base) for spec in logger_specs(data)]


def _spec(data: Any) -> LoggerSpec:
    fields: dict[str, Any] = {"type": data} if isinstance(data, str) else (
        {str(key): value for key, value in data.items()} if isinstance(data, Mapping) else {})
    kind = fields.pop("type", None)
    if kind in SETTINGS:
        extra = sorted(set(fields) - set(SETTINGS[kind]))
        if extra:
            raise ConfigError(f"logger {kind}: unknown setting(s) {', '.join(extra)}; "
                              f"allowed: {', '.join(SETTINGS[kind])}")
        return LoggerSpec(kind, fields)
    if not isinstance(kind, str) or ":" not in kind:
        raise ConfigError(
            f"each logger must be a mapping whose 'type' is one of {', '.join(SETTINGS)} "
            f"(or 'module:Class' for your own), like {_EXAMPLE}; got {data!r}")
    return LoggerSpec(kind, fields)
