"""Evaluation apart from training: ``optimize(train, evaluate=...)``.

After a trial's training returns, its worker runs ``evaluate(trial)`` on the checkpoint that
training just wrote (``trial.checkpoint_dir``), before the checkpoint is committed. The
metrics it returns are merged over the training metrics (evaluation wins on a clash), and
the study's metric or fitness function reads the merged dict: so fitness can be a score
that training never computes (BLEU, an external program's verdict, a held-out accuracy).
An evaluation that raises or returns bad metrics fails the trial like a training error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pbtune._errors import ConfigError, TrialFailedError
from pbtune._imports import import_object
from pbtune.trial import Trial

Fn = Callable[[Trial], Mapping[str, Any]]


@dataclass
class TrainThenEvaluate:
    """A training function followed by an evaluation; each a function or ``"file.py:name"``.

    Picklable when both are (module-level functions, or references), so it travels to
    worker processes like a plain training function.
    """

    train: Fn | str
    evaluate: Fn | str
    _loaded: tuple[Fn, Fn] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for role, fn in (("train", self.train), ("evaluate", self.evaluate)):
            if not isinstance(fn, str) and not callable(fn):
                raise ConfigError(f"{role} must be a function of a pbtune.Trial, got {fn!r}")

    def __getstate__(self) -> dict[str, Any]:
        return {"train": self.train, "evaluate": self.evaluate, "_loaded": None}

    def __call__(self, trial: Trial) -> dict[str, Any]:
        train, evaluate = self._functions()
        metrics = _as_dict(train(trial), "the training function")
        try:
            scored = evaluate(trial)
        except TrialFailedError:
            raise
        except Exception as error:
            raise TrialFailedError(f"the evaluate function raised {error!r}") from error
        metrics.update(_as_dict(scored, "the evaluate function"))
        return metrics

    def _functions(self) -> tuple[Fn, Fn]:
        if self._loaded is None:
            self._loaded = (_load(self.train, "training function"),
                            _load(self.evaluate, "evaluate function"))
        return self._loaded


def _load(fn: Fn | str, role: str) -> Fn:
    if not isinstance(fn, str):
        return fn
    loaded = import_object(fn, role)
    if not callable(loaded):
        raise ConfigError(f"{fn!r} ({role}) is not callable")
    return loaded  # type: ignore[no-any-return]


def _as_dict(result: Any, source: str) -> dict[str, Any]:
    if not isinstance(result, Mapping):
        raise TrialFailedError(
            f"{source} returned {result!r}; it must return a dict of metrics"
        )
    return dict(result)
