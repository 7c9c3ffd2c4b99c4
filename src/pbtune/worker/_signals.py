"""Signals around local worker processes: children that start with Ctrl-C ignored, and a
run's Ctrl-C and SIGTERM taken once, so that its clean-up runs to the end."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing import resource_tracker
from typing import Any


@contextmanager
def children_ignore_sigint() -> Iterator[None]:
    """Start processes that ignore SIGINT from their first instruction on.

    A terminal's Ctrl-C goes to the whole process group: a worker still importing its
    modules would print a KeyboardInterrupt traceback of its own. The child inherits
    SIGINT ignored; here it is blocked meanwhile, so a Ctrl-C in that moment waits and
    is this process's as soon as the child has started (Linux keeps a blocked signal
    pending even while it is ignored).
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "pthread_sigmask"):
        yield
        return
    resource_tracker.ensure_running()  # starting it unblocks SIGINT: do it before
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


@contextmanager
def _stop_signals(handle: Callable[[list[int]], None]) -> Iterator[list[int]]:
    """Route Ctrl-C and SIGTERM to ``handle`` (called with every signal that came so far,
    the newest last) while inside, in the main thread; yield that list."""
    came: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield came
        return

    def caught(signum: int, _frame: Any) -> None:
        came.append(signum)
        handle(came)

    previous = {number: signal.signal(number, caught)
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield came
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _interrupt(came: list[int]) -> KeyboardInterrupt:
    return KeyboardInterrupt(*(("SIGTERM",) if came[-1] == signal.SIGTERM else ()))


@contextmanager
def interrupts_once() -> Iterator[None]:
    """While inside, the first Ctrl-C or SIGTERM raises `KeyboardInterrupt` and later ones
    are ignored: a user who presses Ctrl-C twice stops the run once, and its clean-up
    (stop the workers, record their trials as LOST) runs to the end."""

    def once(came: list[int]) -> None:
        if len(came) == 1:
            raise _interrupt(came)

    with _stop_signals(once):
        yield


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM off while inside, and raise them as `KeyboardInterrupt` on
    the way out: a run's clean-up (stop the workers, record their trials as LOST) must
    not be cut short by a second Ctrl-C, or those trials would show as RUNNING until the
    next run. It takes seconds at most: a worker that does not stop is killed."""
    with _stop_signals(lambda came: None) as came:
        yield
    if came:
        raise _interrupt(came)
