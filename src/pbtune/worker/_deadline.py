"""`Deadline`: the wall-clock limit of one run (`Study.optimize(timeout=...)`,
`Study.join(timeout=...)`, ``pbtune run/worker --timeout``).

At the deadline a backend stops its own workers and puts the trials they hold back in
the queue unchanged (`pbtune.controller.Controller.requeue_worker`): a segment may take
an hour and a timeout bounds the wall clock, so it does not wait for them. Nothing counts
as a failure, the study stays RUNNING, and the next run goes on from there.
"""

from __future__ import annotations

import math
import numbers
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pbtune._errors import ConfigError


class TimedOut(BaseException):
    """Raised in the main thread at the deadline of a run whose one worker loop runs
    there (`Study.join` with one worker), as Ctrl-C raises KeyboardInterrupt there. Not an
    `Exception`, so training code's ``except Exception`` does not swallow it."""


def check_timeout(timeout: object) -> float | None:
    """``timeout`` as seconds (None: no limit), or a `ConfigError` that says what to pass."""
    if timeout is None:
        return None
    if (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real)
            or not math.isfinite(float(timeout)) or float(timeout) <= 0):
        raise ConfigError(
            f"timeout must be a positive, finite number of seconds (e.g. timeout=3600), or "
            f"None for no limit; got {timeout!r}"
        )
    return float(timeout)


class Deadline:
    """When a run stops: ``timeout`` seconds of wall clock after it was made (None: never).

    The backends check `passed` in their monitor loops; one that stops there leaves
    `reached` set, and adds the trials it put back in the queue to `put_back`.
    """

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._at = None if timeout is None else time.monotonic() + timeout
        self.reached = False
        self.put_back = 0

    def passed(self) -> bool:
        """Whether the deadline has passed (it then stays `reached`)."""
        if self._at is not None and time.monotonic() >= self._at:
            self.reached = True
        return self.reached

    def remaining(self) -> float | None:
        """Seconds left (0 once passed); None without a limit."""
        return None if self._at is None else max(0.0, self._at - time.monotonic())


@contextmanager
def raising_at(deadline: Deadline | None) -> Iterator[threading.Event | None]:
    """While inside, the deadline raises `TimedOut` in this thread, the main one (a
    SIGALRM timer, which also wakes a sleep or a wait), as Ctrl-C raises there.

    Off the main thread no signal can reach it: this yields an event set at the
    deadline instead, for a worker loop to stop at its next trial. Without a limit it
    does nothing and yields None.
    """
    remaining = deadline.remaining() if deadline is not None else None
    if deadline is None or remaining is None:
        yield None
        return
    if threading.current_thread() is not threading.main_thread():
        stop = threading.Event()

        def stop_now() -> None:
            deadline.reached = True
            stop.set()

        timer = threading.Timer(remaining, stop_now)
        timer.daemon = True
        timer.start()
        try:
            yield stop
        finally:
            timer.cancel()
        return
    armed = True

    def alarm(_signum: int, _frame: Any) -> None:
        if armed and deadline.passed():
            raise TimedOut
        if armed:  # early (a timer of the training code's?): wait for the rest
            signal.setitimer(signal.ITIMER_REAL, max(deadline.remaining() or 0.0, 1e-3))

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, max(remaining, 1e-3))
    try:
        yield None
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
