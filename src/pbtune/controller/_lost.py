"""Trials whose worker went silent: found by their heartbeats, failed as lost, retried."""

from __future__ import annotations

import time
from collections.abc import Callable

from pbtune.controller._config import StudyConfig
from pbtune.storages import HeldTrial


class Reaper:
    """Fails held trials without a heartbeat for ``heartbeat_timeout`` on two looks at
    least a heartbeat interval apart.

    How long a trial has been silent is measured by the database, with the clock that
    stamped its heartbeats (``stale``: the held trials silent for longer than a number of
    seconds, with their ``silence``), never by comparing one machine's clock with another's:
    a worker whose clock runs minutes ahead is reaped as soon as one that agrees, and one
    whose clock runs behind is never reaped while it beats. The interval between looks is
    timed by this process's own monotonic clock (``monotonic``), which no clock change
    moves.

    A storage outage stops every heartbeat at once; when it ends, live workers beat again
    within an interval and are spared, while a dead worker's trial is reaped on the next
    look. A silent worker is not the trial's fault, so ``fail`` is asked not to use up the
    member's ``max_retries``.
    """

    def __init__(self, config: StudyConfig, stale: Callable[[float], list[HeldTrial]],
                 fail: Callable[[HeldTrial, str], bool],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._stale = stale
        self._fail = fail
        self._monotonic = monotonic
        self._next: float | None = None
        # (trial, its last heartbeat) seen silent too long -> when, on this process's clock
        self._suspects: dict[tuple[int, float | None], float] = {}

    def maybe_reap(self) -> None:
        """`reap`, at most once per heartbeat interval."""
        now = self._monotonic()
        if self._next is None or now >= self._next:
            self._next = now + self._config.heartbeat_interval
            self.reap(now)

    def reap(self, now: float | None = None) -> int:
        """Fail the trials seen silent too long on this look and on one at least an
        interval earlier (``now``: this process's monotonic time); return how many."""
        now = self._monotonic() if now is None else now
        suspects: dict[tuple[int, float | None], float] = {}
        reaped = 0
        for held in self._stale(self._config.heartbeat_timeout):
            key = (held.trial.id, held.heartbeat_at)
            first_seen = self._suspects.get(key, now)
            if now - first_seen >= self._config.heartbeat_interval:
                silence = held.silence if held.silence is not None else 0.0
                reaped += self._fail(
                    held, f"lost: no heartbeat from worker {held.trial.worker} for "
                          f"{silence:.0f}s"
                )
            else:
                suspects[key] = first_seen
        self._suspects = suspects
        return reaped
