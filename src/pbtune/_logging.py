"""pbtune's log: the ``pbtune`` logger, its default stderr handler, and a Ctrl-C that
ends a script with one line instead of a traceback.

Like Optuna, pbtune logs what a run does at INFO (a line per finished trial, a status
line, the summary) and shows it without any setup: unless the user configured logging
(a handler on the root logger or on ``pbtune``), a run attaches one stderr handler to
``pbtune``. The standard levels turn it down::

    logging.getLogger("pbtune").setLevel(logging.WARNING)  # warnings and errors only
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TextIO

ROOT = "pbtune"
SUMMARY = "pbtune_summary"  # the `extra` key that marks a run's summary record
_REPORTED = "_pbtune_reported"  # set on a KeyboardInterrupt whose one line was logged

_lock = threading.Lock()
_handler: logging.Handler | None = None
_hook_installed = False


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record, not as it was when made, so the
    live progress bar (which redirects stderr while it shows) prints lines above itself."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:  # configured since: the root's handlers print it
            return
        super().emit(record)


def get_logger(name: str) -> logging.Logger:
    """``pbtune.<name>``: a child of the logger users configure."""
    return logging.getLogger(f"{ROOT}.{name}")


def ensure_default_handler() -> None:
    """Show pbtune's INFO lines on stderr unless the user configured logging.

    The ``pbtune`` logger goes to INFO only if nobody set its level, so
    ``logging.getLogger("pbtune").setLevel(logging.WARNING)`` before a run silences the
    lines; a handler is added only if neither the root logger nor ``pbtune`` has one
    (then the user's handlers print pbtune's records, as they do any library's).
    """
    global _handler
    with _lock:
        logger = logging.getLogger(ROOT)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        if _handler is not None or logger.handlers or logging.getLogger().handlers:
            return
        _handler = _StderrHandler()
        _handler.setFormatter(logging.Formatter(
            "[%(levelname).1s %(asctime)s pbtune] %(message)s", "%Y-%m-%d %H:%M:%S"
        ))
        logger.addHandler(_handler)


class DropSummary(logging.Filter):
    """Drops the summary record, for a caller that prints the summary itself
    (`pbtune run` prints it on stdout)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, SUMMARY, False)


class DropTrialFailures(logging.Filter):
    """Drops a worker loop's own note of a failed trial (``pbtune.worker``: "trial N
    failed: ...") where the run that started the loop logs a line for every finished
    trial, failures included, so each failure is said once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("trial %s failed")


@contextmanager
def trial_failures_said_by_the_run() -> Iterator[None]:
    """While a run's monitor logs every finished trial: `DropTrialFailures`."""
    logger, drop = logging.getLogger(f"{ROOT}.worker"), DropTrialFailures()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def reported_interrupt(error: BaseException) -> bool:
    """Whether pbtune already logged the one line that explains ``error``."""
    return bool(getattr(error, _REPORTED, False))


def mark_reported(error: BaseException) -> None:
    """Mark a KeyboardInterrupt whose one line was logged: if it ends the script, the
    interpreter prints no traceback for it (and still ends as Ctrl-C does, by SIGINT:
    a shell sees exit code 130). Code that catches KeyboardInterrupt still gets it."""
    global _hook_installed
    setattr(error, _REPORTED, True)
    with _lock:
        if _hook_installed:
            return
        previous = sys.excepthook

        def hook(kind: type[BaseException], value: BaseException,
                 tb: TracebackType | None) -> None:
            if isinstance(value, KeyboardInterrupt) and reported_interrupt(value):
                return
            previous(kind, value, tb)

        sys.excepthook = hook
        _hook_installed = True
