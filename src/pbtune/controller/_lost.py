"""Trials whose worker is gone: found silent by their heartbeats (`Reaper`), or named by
the run that saw their worker die or time out; failed as lost and retried, or put back in
the queue (`LostTrials`, the controller's side of it)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pbtune.checkpoints import CheckpointStore
from pbtune.controller._claims import Claimed
from pbtune.controller._config import StudyConfig
from pbtune.storages import HeldTrial, Storage, StudyRecord
from pbtune.trial import TrialState

_log = logging.getLogger("pbtune.controller")


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


class LostTrials:
    """The controller's methods for trials whose worker is gone (`Controller` has them; this
    is its mixin): reaping the silent, failing or requeueing a dead or stopped worker's."""

    storage: Storage
    study: StudyRecord
    _reaper: Reaper
    _store: CheckpointStore

    release: Callable[[Claimed], bool]  # the controller's
    tell_failure: Callable[..., bool]

    def maybe_reap(self) -> None:
        """`reap_stale`, at most once per heartbeat interval."""
        self._reaper.maybe_reap()

    def reap_stale(self, now: float | None = None) -> int:
        """Fail held trials whose worker went silent, and retry them (see `Reaper`;
        ``now``: `clock.monotonic`); return how many."""
        return self._reaper.reap(now)

    def fail_lost(self, held: HeldTrial | Claimed, reason: str, *, counts: bool = True,
                  state: TrialState = TrialState.LOST) -> bool:
        """Fail a held trial whose worker is gone (LOST; FAILED for ``state=FAILED``, as a
        trial that ran past ``trial_timeout`` is); its member retries it.

        An EVALUATING trial whose evaluator went silent or was interrupted
        (``counts=False``) goes back to TRAINED: its training is kept, and its claim is
        revoked so the evaluator's late result is refused. One whose evaluator crashed or
        timed out (``counts=True``) fails like a training, using up a retry, so an
        evaluation that kills its worker every time ends instead of looping.
        """
        claimed = held if isinstance(held, Claimed) else Claimed(held.trial, held.claim)
        if held.trial.state == TrialState.EVALUATING and not counts:
            if self.release(claimed):
                _log.warning("evaluation of trial %s goes back to the queue: %s",
                             held.trial.id, reason)
                return True
            return False
        return self.tell_failure(claimed, reason, counts=counts, lost=True, state=state)

    def requeue_worker(self, worker: str) -> int:
        """Put the trials ``worker`` holds back in the queue unchanged (its run stopped at
        its timeout): a training back to QUEUED, an evaluation back to TRAINED, as before
        the claim, which is cleared so that a late result is refused. No failure counts
        and no retry is made; the same trial runs again on the next run. A checkpoint the
        worker committed but did not record is deleted, so that run can commit it again.
        Returns how many trials went back."""
        back = 0
        for held in self.held_trials():
            if held.trial.worker != worker or not self.release(Claimed(held.trial,
                                                                       held.claim)):
                continue
            back += 1
            if held.trial.state == TrialState.RUNNING:
                try:
                    self._store.remove(self._store.final(held.trial.number))
                except Exception as error:  # the end-of-run sweep deletes it
                    _log.warning("could not delete the unrecorded checkpoint of trial %s: "
                                 "%s", held.trial.id, error)
        return back

    def fail_worker(self, worker: str, reason: str, *, counts: bool = True) -> int:
        """Fail the held trials of a worker known to be dead."""
        lost = [h for h in self.held_trials() if h.trial.worker == worker]
        return sum(self.fail_lost(h, reason, counts=counts) for h in lost)

    def held_trials(self) -> list[HeldTrial]:
        """The trials workers hold now (RUNNING or EVALUATING), with their claims."""
        return self.storage.held_trials(self.study.id)
