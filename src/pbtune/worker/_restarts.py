"""What every backend's monitor does when one of its workers dies: fail the worker's
trials as lost, and decide whether to start a replacement."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container, Iterable

from pbtune._errors import StorageError, StudyFailedError
from pbtune.controller import Controller, Role
from pbtune.storages import StudyState
from pbtune.trial import TrialState
from pbtune.worker._deadline import Deadline

_log = logging.getLogger("pbtune.worker")


def roles_can_finish(roles: Iterable[Role], evaluated: bool) -> bool:
    """Whether live workers of these roles can still finish a study: someone trains
    and, in a study with an evaluate function, someone evaluates. Without both, the
    others would wait for each other forever."""
    alive = set(roles)
    trains = bool(alive & {"both", "train"})
    evaluates = bool(alive & {"both", "evaluate"}) or not evaluated
    return trains and evaluates


class Restarts:
    """The bounded-restart policy shared by the process and Ray backends.

    Replacements are bounded by deaths in a row without a trial completing in between,
    so a run that loses workers now and then goes on, and a crash loop ends.
    """

    def __init__(self, controller: Controller, workers: int, max_restarts: int | None,
                 what: str = "worker processes") -> None:
        self._controller = controller
        self._budget = max_restarts if max_restarts is not None else 2 * workers + 2
        self._left = self._budget
        self._completed_at_last_death = -1
        self._what = what
        self.deaths: list[str] = []

    def exited(self, worker: str, reason: str, *, crashed: bool) -> bool:
        """Record that ``worker`` is gone; True if a replacement should start.

        A worker that ended by itself (``crashed=False``: the study is done, or it ran
        its ``max_trials``) still has its trials failed, in case it left one behind.
        """
        running = record_lost_worker(self._controller, worker, reason)
        if not crashed:
            return False
        _log.warning(reason)
        self.deaths.append(reason)
        completed = _count_complete(self._controller)
        if completed != self._completed_at_last_death:
            self._completed_at_last_death, self._left = completed, self._budget
        if running and self._left > 0:
            self._left -= 1
            return True
        return False

    def stopped(self, worker: str, deadline: Deadline | None) -> None:
        """The run stopped ``worker`` (it is gone now). At the run's ``deadline``, its
        trials go back in the queue unchanged (counted in ``deadline.put_back``); on
        Ctrl-C or SIGTERM, they are retried without using up ``max_retries``."""
        if deadline is not None and deadline.reached:
            deadline.put_back += self._controller.requeue_worker(worker)
        else:
            self._controller.fail_worker(worker, "lost: the run was interrupted",
                                         counts=False)

    def check(self, deadline: Deadline | None = None) -> None:
        """Raise `StudyFailedError` if workers died and the study is left unfinished (not
        for a run that stopped at its ``deadline``: its workers were replaced)."""
        controller = self._controller
        if deadline is not None and deadline.reached:
            return
        if self.deaths and controller.study_state() == StudyState.RUNNING:
            raise StudyFailedError(
                f"{self._what} kept dying ({len(self.deaths)} times; the last: "
                f"{self.deaths[-1].removeprefix('lost: ')}); see their output above. The "
                "study is unfinished: fix the cause and run again to continue it."
            )


def _count_complete(controller: Controller) -> int:
    try:
        return controller.completed()
    except StorageError:
        return -1


def record_lost_worker(controller: Controller, worker: str, reason: str) -> bool:
    """Fail a dead worker's trial; True if the study still runs (so replace the worker)."""
    try:
        controller.fail_worker(worker, reason)
        state = controller.study_state()
    except StorageError as error:
        # Its trial goes stale and is retried by the heartbeat check instead.
        _log.warning("cannot record the lost worker %s yet: %s", worker, error)
        return True
    return state == StudyState.RUNNING


def watch_study(controller: Controller, *steps: Callable[[], None] | None) -> None:
    """The monitor's periodic work: reap silent workers' trials, then ``steps`` (enforce
    the trial timeout, refresh the display)."""
    try:
        controller.maybe_reap()
        for step in steps:
            if step is not None:
                step()
    except StorageError as error:
        # The workers ride out a storage outage with their own retries; so does the
        # monitor, which only watches.
        _log.warning("cannot read the study: %s", error)


class TrialTimeout:
    """Fails the trials of the ``live`` workers that ran past ``trial_timeout``, and
    ``kill`` those workers (the monitor replaces them as it would any dead worker).

    A trial is timed by the monitor's own monotonic clock, from the first look that found
    it held, and not from its ``started_at``: that is stamped by the clock of the worker's
    machine (a Ray worker may run on another), and comparing it with the monitor's clock
    would kill a trial early where that clock runs behind and late where it runs ahead.
    The monitor looks every few tenths of a second, so that is all a trial may gain.

    Example::

        timeout = TrialTimeout(controller, live, kill)
        timeout()  # on every look of the monitor
    """

    def __init__(self, controller: Controller, live: Container[str],
                 kill: Callable[[str], None],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._controller = controller
        self._live = live
        self._kill = kill
        self._monotonic = monotonic
        self._first_seen: dict[tuple[int, str], float] = {}  # (trial, claim) -> when

    def __call__(self) -> None:
        limit = self._controller.config.trial_timeout
        if limit is None:
            return
        now = self._monotonic()
        seen: dict[tuple[int, str], float] = {}
        for held in self._controller.held_trials():
            trial, worker = held.trial, held.trial.worker or ""
            if trial.state != TrialState.RUNNING or worker not in self._live:
                continue
            key = (trial.id, held.claim)
            seen[key] = first = self._first_seen.get(key, now)
            if now - first <= limit:
                continue
            # Fail first: only if that still finds the trial running is its worker
            # killed, so a worker that just moved on to another trial is left alone.
            if self._controller.fail_lost(
                    held, f"timed out: ran longer than trial_timeout={limit}s",
                    state=TrialState.FAILED):
                self._kill(worker)
        self._first_seen = seen
