"""Trials whose worker went silent: found by their heartbeats, failed as lost, retried."""

from __future__ import annotations

import time
from collections.abc import Callable

from pbtune.controller._config import StudyConfig
from pbtune.storages import HeldTrial


class Reaper:
    """Fails held trials whose heartbeat is older than ``heartbeat_timeout`` on two looks
    at least a heartbeat interval apart.

    A storage outage stops every heartbeat at once; when it ends, live workers beat again
    within an interval and are spared, while a dead worker's trial is reaped on the next
    look. A silent worker is not the trial's fault, so ``fail`` is asked not to use up the
    member's ``max_retries``.
    """

    def __init__(self, config: StudyConfig, stale: Callable[[float], list[HeldTrial]],
                 fail: Callable[[HeldTrial, str], bool]) -> None:
        self._config = config
        self._stale = stale  # the held trials whose last heartbeat is before a time
        self._fail = fail
        self._next = 0.0
        self._suspects: dict[tuple[int, float | None], float] = {}

    def maybe_reap(self) -> None:
        """`reap`, at most once per heartbeat interval."""
        now = time.time()
        if now >= self._next:
            self._next = now + self._config.heartbeat_interval
            self.reap(now)

    def reap(self, now: float) -> int:
        """Fail the trials seen stale on this look and on one an interval ago."""
        suspects: dict[tuple[int, float | None], float] = {}
        reaped = 0
        for held in self._stale(now - self._config.heartbeat_timeout):
            key = (held.trial.id, held.heartbeat_at)
            first_seen = self._suspects.get(key, now)
            if now - first_seen >= self._config.heartbeat_interval:
                age = now - (held.heartbeat_at or now)
                reaped += self._fail(
                    held, f"lost: no heartbeat from worker {held.trial.worker} for {age:.0f}s"
                )
            else:
                suspects[key] = first_seen
        self._suspects = suspects
        return reaped
