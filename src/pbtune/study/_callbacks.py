"""`Callbacks`: the functions `Study.optimize(callbacks=[...])` and `Study.join` call once
for each trial that finishes while they run, in the process that runs them.

The run's monitor reads finished trials from the storage anyway, for its log lines
(`pbtune.study._report.TrialLog`), so the callbacks are called from that same reading:
for every backend, in order of completion, never in a worker.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

from pbtune._errors import ConfigError
from pbtune.trial import FrozenTrial

_log = logging.getLogger("pbtune.study")

Callback = Callable[..., object]

_ADVICE = ("pass functions of one argument, the finished pbtune.FrozenTrial, or of two, "
           "(study, trial) as in Optuna: callbacks=[on_trial]")


class Callbacks:
    """The checked callbacks of one run, called with each finished trial (`__call__`).

    A callback that raises is logged (ERROR, with the traceback) and the study goes on.
    """

    def __init__(self, study: object, given: Iterable[Callback] | None) -> None:
        self._study = study
        self._given = check_callbacks(given)

    def __bool__(self) -> bool:
        return bool(self._given)

    def __call__(self, trial: FrozenTrial) -> None:
        for callback, with_study in self._given:
            try:
                if with_study:
                    callback(self._study, trial)
                else:
                    callback(trial)
            except Exception:
                _log.exception("callback %s raised on trial %s (%s); the study goes on",
                               _name(callback), trial.number, trial.state.value)


def check_callbacks(given: Iterable[Callback] | None) -> list[tuple[Callback, bool]]:
    """Each callback, and whether it takes the study too; a `ConfigError` for anything
    that is not a list of callables of one or two arguments."""
    if given is None:
        return []
    if callable(given) or isinstance(given, (str, bytes)) or not isinstance(given, Iterable):
        raise ConfigError(f"callbacks must be a list of functions, got {given!r}; {_ADVICE}")
    return [(callback, _takes_study(callback)) for callback in list(given)]


def _takes_study(callback: Any) -> bool:
    """True for ``(study, trial)``, False for ``(trial)``, decided by the signature: two
    required positional parameters (or only ``*args``) get both, one gets the trial."""
    if not callable(callback):
        raise ConfigError(f"callback {callback!r} is not callable; {_ADVICE}")
    try:
        signature = inspect.signature(callback)
    except (TypeError, ValueError):
        raise ConfigError(
            f"callback {_name(callback)} has no signature to read; wrap it: "
            "callbacks=[lambda trial: ...]"
        ) from None
    positional = [p for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    keyword_only = [p for p in signature.parameters.values()
                    if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in signature.parameters.values())
    if not keyword_only and len(required) <= 2:
        if len(required) == 2 or (not required and varargs):
            return True
        if required or positional:
            return False
    raise ConfigError(f"callback {_name(callback)}{signature} cannot be called with a trial; "
                      f"{_ADVICE}")


def _name(callback: Any) -> str:
    return str(getattr(callback, "__qualname__", None) or repr(callback))
