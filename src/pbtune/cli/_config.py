"""The study file of `pbtune run`: a YAML mapping of `create_study` arguments.

Example ``study.yaml``::

    name: digits
    storage: sqlite:///pbtune.db
    metric: accuracy
    mode: max                       # or, for several: objectives: {accuracy: max, latency_ms: min}
    constraints: {memory_mb: {max: 2048}}    # optional: feasible trials first
    early_stop: {type: lagging, generations: 3}   # optional: restart members that stay behind
    population_size: 8
    steps_per_trial: 100
    max_steps: 3000
    space:
      lr: {type: float, low: 1e-4, high: 1e-1, log: true}
      batch_size: {type: choice, choices: [32, 64, 128], ordered: true}
    exploit: {type: truncation, fraction: 0.2}
    explore: {type: perturb, factors: [0.8, 1.25], resample_probability: 0.25}
    checkpoint_root: checkpoints    # relative to this file's folder
    command: python train.py        # optional: what `pbtune run` runs for each trial
    stop:                           # optional: end the study early (one rule or a list)
      - {type: target, accuracy: 0.99}
      - {type: no_improvement, generations: 5}
    loggers:                        # optional: log each finished trial (pbtune.loggers)
      - {type: tensorboard, log_dir: runs}          # relative to this file's folder
      - {type: mlflow, tracking_uri: "sqlite:///mlflow.db"}
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pbtune._errors import ConfigError, PbtuneError
from pbtune.checkpoints import is_url
from pbtune.controller import import_object
from pbtune.loggers import Logger, LoggerSpec, logger_specs
from pbtune.space import SearchSpace
from pbtune.strategies import (
    early_stop_from_dict,
    exploit_from_dict,
    explore_from_dict,
    stop_from_dict,
)

# Keys passed to `create_study` unchanged (it validates their values).
PLAIN_KEYS = (
    "metric",
    "mode",
    "population_size",
    "steps_per_trial",
    "max_steps",
    "seed",
    "max_retries",
    "retry_delay",
    "keep_best",
    "heartbeat_timeout",
    "trial_timeout",
    "objectives",
    "constraints",
)
ALLOWED_KEYS = (
    "name",
    "storage",
    "space",
    *PLAIN_KEYS,
    "exploit",
    "explore",
    "early_stop",
    "checkpoint_root",
    "fitness",
    "evaluate",
    "command",
    "stop",
    "loggers",
)


@dataclass(frozen=True)
class RunConfig:
    """A parsed study file: the study's name and storage, and the other `create_study`
    keyword arguments, already turned into pbtune objects; the ``loggers`` checked, made
    by `make_loggers` where trials run."""

    path: Path
    name: str | None
    storage: str | None
    options: dict[str, Any] = field(default_factory=dict)
    command: str | list[str] | None = None
    loggers: tuple[LoggerSpec, ...] = ()

    def make_loggers(self) -> list[Logger]:
        """The file's loggers, as callbacks for `Study.optimize` or `Study.join`."""
        try:
            return [spec.make(self.path.resolve().parent) for spec in self.loggers]
        except PbtuneError as error:
            raise type(error)(f"{self.path}: {error}") from None


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; read it as the float users mean."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_config(path: str | Path) -> RunConfig:
    """Read and check a study file; every problem is a `ConfigError` naming the file."""
    path = Path(path)
    data = _read_yaml(path)
    unknown = [key for key in data if key not in ALLOWED_KEYS]
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(ALLOWED_KEYS)}"
        )
    try:
        return _build(path, data)
    except PbtuneError as error:
        raise type(error)(f"{path}: {error}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read study file {str(path)!r}: {error.strerror}") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(
            f"{path}: expected a mapping of study settings (name:, space:, metric:, ...), "
            f"got {type(data).__name__}"
        )
    return {str(key): value for key, value in data.items()}


def _build(path: Path, data: dict[str, Any]) -> RunConfig:
    base = path.resolve().parent
    name = _optional_str(data, "name")
    storage = _optional_str(data, "storage")
    if "space" not in data:
        raise ConfigError("'space' is required: a mapping like {lr: {type: float, low: ...}}")
    options: dict[str, Any] = {"space": SearchSpace.from_dict(_space_mapping(data["space"]))}
    options.update({key: data[key] for key in PLAIN_KEYS if key in data})
    for key, parse in (("exploit", exploit_from_dict), ("explore", explore_from_dict),
                       ("early_stop", early_stop_from_dict)):
        if key in data:
            options[key] = _strategy(key, data[key], parse)
    if data.get("checkpoint_root") is not None:
        options["checkpoint_root"] = _checkpoint_root(data["checkpoint_root"], base)
    if data.get("fitness") is not None:
        options["fitness"] = import_fitness(data["fitness"], base)
    if data.get("evaluate") is not None:
        options["evaluate"] = _evaluate_ref(data["evaluate"], base)
    if data.get("stop") is not None:
        options["stop"] = _stop(data["stop"])
    return RunConfig(path=path, name=name, storage=storage, options=options,
                     command=_command(data.get("command")),
                     loggers=tuple(logger_specs(data.get("loggers"))))


def _command(value: Any) -> str | list[str] | None:
    """The file's ``command``: a string (split like a shell) or a list of arguments."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(
        f"'command' must be a string like 'python train.py' or a list of strings, got {value!r}"
    )


def _stop(value: Any) -> list[Any]:
    """The file's ``stop``: one rule (``{type: target, accuracy: 0.99}``) or a list."""
    try:
        return list(stop_from_dict(value))
    except TypeError as error:  # a rule given settings it does not take
        raise ConfigError(f"'stop': {error}") from None


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"'{key}' must be a non-empty string, got {value!r}")
    return value


def _checkpoint_root(value: Any, base: Path) -> Path | str:
    """The file's ``checkpoint_root``; a relative one is relative to the file's folder, a
    URL (``s3://bucket/prefix``) is kept as it is."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"'checkpoint_root' must be a path to a directory, got {value!r}")
    if is_url(value.strip()):
        return value.strip()
    try:
        root = Path(value).expanduser()
    except RuntimeError as error:  # "~nobody/ckpt": no such user
        raise ConfigError(f"'checkpoint_root' {value!r}: {error}") from None
    return root if root.is_absolute() else base / root


def _space_mapping(space: Any) -> Mapping[str, Any]:
    if not isinstance(space, Mapping):
        raise ConfigError(
            f"'space' must be a mapping of name -> {{type: float|int|choice, ...}}, got {space!r}"
        )
    return space


def _strategy(key: str, value: Any, parse: Callable[[Any], Any]) -> Any:
    if not isinstance(value, (str, Mapping)):
        raise ConfigError(f"'{key}' must be a name or a mapping with a 'type', got {value!r}")
    try:
        return parse(value)
    except TypeError as error:  # a user's strategy class given unexpected settings
        raise ConfigError(f"'{key}': {error}") from None


def import_fitness(ref: Any, base: Path) -> Callable[..., float]:
    """Import ``module:fn`` (from the study file's folder or the current one) or
    ``path/to/file.py:fn``.

    A file is imported as a plain module from its folder, so worker processes, which
    receive the function by reference, can import it too.
    """
    if not isinstance(ref, str) or ":" not in ref:
        raise ConfigError(f"'fitness' must be 'module:function', got {ref!r}")
    target, _, qualname = ref.rpartition(":")
    folders = [base, Path.cwd()]
    if target.endswith(".py") or "/" in target:
        file = (base / Path(target).expanduser()).resolve()
        if not file.is_file():
            raise ConfigError(f"fitness {ref!r}: no such file {str(file)!r}")
        folders, target = [file.parent], file.stem
    for folder in reversed(folders):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    try:
        fn = import_object(f"{target}:{qualname}", "fitness")
    except PbtuneError:
        raise
    except Exception as error:  # the module itself raised while importing
        raise ConfigError(f"fitness {ref!r}: importing {target!r} failed: {error!r}") from None
    if not callable(fn):
        raise ConfigError(f"fitness {ref!r} is not callable")
    return fn  # type: ignore[no-any-return]


def _evaluate_ref(value: Any, base: Path) -> str:
    """``evaluate: file.py:name`` (relative to the study file) or ``module:name``, kept as a
    reference that every worker imports for itself."""
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"evaluate must be 'file.py:name' or 'module:name', got {value!r}")
    target, _, name = value.rpartition(":")
    if target.endswith(".py") and not Path(target).is_absolute():
        target = str((base / target).resolve())
    return f"{target}:{name}"
