"""The controller: ask (claim a trial), tell (record it and decide the member's next).

Every decision is written as a row in the same transaction as the result that caused it,
so a killed worker or controller never loses a decision, and a restarted one finds the
study exactly where it was.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pbtune._errors import TrialFailedError
from pbtune.checkpoints import CheckpointStore, Location, open_store
from pbtune.controller._claims import _UNREAD, DONE, WAIT, Claimed, Done, Role, Wait
from pbtune.controller._config import StudyConfig
from pbtune.controller._members import (
    after_failure,
    collect_garbage,
    enqueue_next,
    maybe_finish_study,
)
from pbtune.storages import (
    Holder,
    Storage,
    StudyRecord,
    StudyState,
    Transaction,
)
from pbtune.trial import FrozenTrial, TrialState

_log = logging.getLogger("pbtune.controller")


class Controller:
    """ask / tell / heartbeat over a `Storage`, for one study."""

    def __init__(self, storage: Storage, study: StudyRecord, config: StudyConfig) -> None:
        self.storage = storage
        self.study = study
        self.config = config
        self.store: CheckpointStore = open_store(config.checkpoint_root, study.checkpoint_dir)
        self._next_reap = 0.0
        # Deletes a collected checkpoint after the commit that forgot it; a worker hands
        # this to a background thread (a directory left by a crash is swept at the end).
        self.discard: Callable[[Location], None] = self.remove_checkpoint
        self._suspects: dict[tuple[int, float | None], float] = {}

    def remove_checkpoint(self, reference: Location) -> None:
        """Delete a checkpoint of this study (never anything outside it)."""
        self.store.remove(reference)

    # -- ask ---------------------------------------------------------------------------------
    def ask(self, worker: str, role: Role = "both") -> Claimed | Wait | Done:
        """Claim work for ``worker``: a trial to evaluate or to train (see `Role`).

        A look that only reads comes first, so idle workers polling a busy study do not
        queue for the write lock.
        """
        self.maybe_reap()
        study_id = self.study.id
        state, counts = self.storage.read(
            lambda c: Transaction(c, study_id, lock_study=False).queue_state()
        )
        if state != StudyState.RUNNING:
            return DONE
        if not any(counts[s] for s in self._claimable(role)):
            return WAIT if any(counts.values()) else DONE
        return self.claim(worker, role)

    def claim(self, worker: str, role: Role = "both") -> Claimed | Wait | Done:
        """`ask` without the look first: for a busy worker that expects work queued."""
        token = uuid.uuid4().hex

        def work(tx: Transaction) -> Claimed | Wait | Done:
            if tx.study_state() != StudyState.RUNNING:
                return DONE
            claimed = self._claim(tx, worker, token, role)
            if claimed is not None:
                return claimed
            return WAIT if tx.count_active() else DONE

        # Claims lock single trial rows (SKIP LOCKED), never the study: they do not wait
        # for decisions.
        return self.storage.write(self.study.id, work, lock=False)

    def _claimable(self, role: Role) -> tuple[TrialState, ...]:
        """The states this role claims from, in order of preference: evaluations first,
        since a member waits for its evaluation before its next trial is decided."""
        if not self.config.evaluated:
            return (TrialState.QUEUED,)
        return {"both": (TrialState.TRAINED, TrialState.QUEUED),
                "train": (TrialState.QUEUED,),
                "evaluate": (TrialState.TRAINED,)}[role]

    def _claim(self, tx: Transaction, worker: str, token: str, role: Role) -> Claimed | None:
        now = time.time()
        for state in self._claimable(role):
            if state == TrialState.TRAINED:
                trial = tx.claim_next_evaluation(worker, token, now)
                if trial is not None:
                    return Claimed(trial, token, None)
            else:
                trial = tx.claim_next(worker, token, now)
                if trial is not None:
                    parent = tx.trial(trial.parent_id) if trial.parent_id is not None else None
                    return Claimed(trial, token, parent)
        return None

    @property
    def study_dir(self) -> Location:
        """The study's checkpoint directory (a `Path`) or URL prefix (a `str`)."""
        return self.store.location

    def parent_checkpoint(self, trial: FrozenTrial | Claimed) -> Path | None:
        """The local directory the trial warm-starts from (a remote parent is downloaded
        and verified first); TrialFailedError or CheckpointError if it cannot be read."""
        parent: FrozenTrial | None = None
        if isinstance(trial, Claimed):
            if trial.parent is not _UNREAD:
                parent = trial.parent
            trial = trial.trial
        if trial.parent_id is None:
            return None
        if parent is None:
            parent = self.storage.get_trial(trial.parent_id)
        assert parent.state == TrialState.COMPLETE, "children are made from COMPLETE parents"
        if parent.checkpoint is None:
            raise TrialFailedError(f"the checkpoint of parent trial {parent.id} is gone")
        return self.store.open(parent.checkpoint, parent.id)

    def heartbeat(self, claimed: Claimed) -> bool:
        return self.storage.heartbeat(claimed.trial.id, claimed.claim, time.time())

    # -- tell ------------------------------------------------------------------------------
    def tell(self, claimed: Claimed, metrics: dict[str, float], fitness: float,
             checkpoint: Location | None) -> bool:
        """Record a COMPLETE trial and enqueue its member's next trial.

        Returns False (and changes nothing) when the trial is no longer this claim's: it
        was failed as lost and retried elsewhere, so a late result must not overwrite it.
        """
        return self.tell_and_ask(claimed, metrics, fitness, checkpoint, None)[0]

    def tell_and_ask(
        self,
        claimed: Claimed,
        metrics: dict[str, float],
        fitness: float,
        checkpoint: Location | None,
        worker: str | None,
        role: Role = "both",
    ) -> tuple[bool, Claimed | None]:
        """`tell`, then, in the same transaction, claim the next work for ``worker``.

        Returns (told, the next claimed trial or None). A worker that goes straight on
        saves a transaction per trial; None means: ask again (nothing queued, or done).
        In an evaluated study this records an evaluation (the claimed trial is
        EVALUATING; ``metrics`` are training's and evaluation's, merged); a training
        result goes to `tell_trained`.
        """
        trial = claimed.trial
        token = uuid.uuid4().hex  # outside `work`: a retried transaction reuses it
        if self.config.evaluated and trial.state != TrialState.EVALUATING:
            raise TrialFailedError(
                f"trial {trial.id} must be evaluated before its result is told"
            )

        def work(tx: Transaction) -> tuple[list[Holder] | None, Claimed | None]:
            now = time.time()  # inside: the transaction may have waited for the lock
            if not tx.update_trial(
                trial.id,
                expect_state=trial.state,
                expect_claim=claimed.claim,
                state=TrialState.COMPLETE,
                metrics=metrics,
                fitness=fitness,
                checkpoint=checkpoint,
                finished_at=now,
                error=None,
            ):
                # A retried transaction whose first COMMIT went through (the connection
                # dropped before the reply) finds its own result: that is success.
                mine = self._recorded(tx, claimed, TrialState.COMPLETE)
                if mine is None or (mine.fitness, mine.checkpoint) != (fitness, checkpoint):
                    return None, None
                held = tx.held_by(token) if worker is not None else None
                return [], self._reclaimed(tx, held, token)
            tx.set_member(trial.member, latest_complete_id=trial.id, failures=0)
            finished = replace(
                trial, state=TrialState.COMPLETE, metrics=dict(metrics), fitness=fitness,
                checkpoint=checkpoint, finished_at=now, error=None,
            )
            population = tx.population()
            if not enqueue_next(tx, self.config, finished, population, now):
                maybe_finish_study(tx)
            garbage = collect_garbage(tx, self.config, population)
            following = None
            if worker is not None and tx.study_state() == StudyState.RUNNING:
                following = self._claim(tx, worker, token, role)
            return garbage, following

        garbage, following = self.storage.write(self.study.id, work)
        if garbage is None:
            _log.warning(
                "refused the result of trial %s: it is no longer held by this worker "
                "(it was failed as lost and retried)", trial.id)
            return False, None
        for old in garbage:
            self.discard(old.checkpoint)
        return True, following

    def tell_trained(
        self,
        claimed: Claimed,
        metrics: dict[str, float],
        checkpoint: Location | None,
        worker: str | None,
        role: Role = "both",
    ) -> tuple[bool, Claimed | None]:
        """Record that a trial of an evaluated study is trained: its checkpoint waits for
        an evaluator (TRAINED). Nothing is decided until it is evaluated.

        A ``worker`` that evaluates (role "both") takes the evaluation at once, in the
        same transaction (the trial becomes EVALUATING under a new claim); a trainer
        (role "train") claims its next trial to train instead. Returns (told, the next
        claimed work or None); False when the trial is no longer this claim's.
        """
        trial = claimed.trial
        token = uuid.uuid4().hex
        evaluate_now = worker is not None and role == "both"

        def work(tx: Transaction) -> tuple[bool, Claimed | None]:
            now = time.time()
            values: dict[str, Any] = {"metrics": metrics, "checkpoint": checkpoint,
                                      "error": None}
            if evaluate_now:
                values.update(state=TrialState.EVALUATING, claim=token, heartbeat_at=now)
            else:
                values.update(state=TrialState.TRAINED)
            if not tx.update_trial(trial.id, expect_state=TrialState.RUNNING,
                                   expect_claim=claimed.claim, **values):
                current = tx.trial(trial.id)
                if current is not None and current.checkpoint == checkpoint and (
                    current.state in (TrialState.TRAINED, TrialState.EVALUATING,
                                      TrialState.COMPLETE)
                ):  # a retried transaction that finds its own result (the checkpoint is
                    # this trial's own), even if an evaluator has moved it on since
                    held = tx.held_by(token) if worker is not None else None
                    return True, self._reclaimed(tx, held, token)
                return False, None
            if evaluate_now:
                assert worker is not None
                mine = replace(trial, state=TrialState.EVALUATING, metrics=dict(metrics),
                               checkpoint=checkpoint, claim=token, heartbeat_at=now)
                return True, Claimed(mine, token, None)
            following = None
            if worker is not None and tx.study_state() == StudyState.RUNNING:
                following = self._claim(tx, worker, token, role)
            return True, following

        told, following = self.storage.write(self.study.id, work)
        if not told:
            _log.warning("refused the training result of trial %s: it is no longer held by "
                         "this worker (it was failed as lost and retried)", trial.id)
        return told, following

    @staticmethod
    def _reclaimed(tx: Transaction, held: FrozenTrial | None, token: str) -> Claimed | None:
        """The work a retried transaction had already claimed under ``token``."""
        if held is None:
            return None
        if held.state == TrialState.EVALUATING:
            return Claimed(held, token, None)
        parent = tx.trial(held.parent_id) if held.parent_id is not None else None
        return Claimed(held, token, parent)

    def tell_failure(
        self, claimed: Claimed, error: str, *, counts: bool = True, lost: bool = False
    ) -> bool:
        """Record a FAILED trial; the member retries it (bounded) or stops.

        ``counts=False`` (an interrupted run) retries without using up ``max_retries``.
        ``lost=True`` (failed on behalf of a dead or silent worker) also revokes the claim,
        so that the worker, should it come back, has its late result refused.
        """
        def work(tx: Transaction) -> bool:
            now = time.time()
            if not tx.update_trial(
                claimed.trial.id,
                expect_state=claimed.trial.state,
                expect_claim=claimed.claim,
                state=TrialState.FAILED,
                error=error,
                finished_at=now,
                checkpoint=None,
                claim=None if lost else claimed.claim,
            ):
                mine = self._recorded(tx, claimed, TrialState.FAILED)
                return mine is not None and mine.error == error
            after_failure(tx, self.config, claimed.trial, now, counts=counts)
            return True

        told = self.storage.write(self.study.id, work)
        if not told:
            _log.warning("refused the failure of trial %s: no longer held by this worker",
                         claimed.trial.id)
        elif claimed.trial.checkpoint is not None:
            self.discard(claimed.trial.checkpoint)  # trained, then its evaluation failed
        return told

    def release(self, claimed: Claimed) -> bool:
        """Give claimed work that was never started back: a trial to train to the queue,
        an evaluation to the trained trials waiting for one."""

        def work(tx: Transaction) -> bool:
            if claimed.trial.state == TrialState.EVALUATING:
                return tx.update_trial(
                    claimed.trial.id, expect_state=TrialState.EVALUATING,
                    expect_claim=claimed.claim, state=TrialState.TRAINED, claim=None,
                    heartbeat_at=None,
                )
            return tx.update_trial(
                claimed.trial.id, expect_state=TrialState.RUNNING, expect_claim=claimed.claim,
                state=TrialState.QUEUED, worker=None, claim=None, started_at=None,
                heartbeat_at=None,
            )

        return self.storage.write(self.study.id, work, lock=False)

    @staticmethod
    def _recorded(tx: Transaction, claimed: Claimed, state: TrialState) -> FrozenTrial | None:
        """The trial, if this claim already recorded it in ``state``."""
        current = tx.trial(claimed.trial.id)
        if current is not None and current.state == state and current.claim == claimed.claim:
            return current
        return None

    # -- lost trials -------------------------------------------------------------------------
    def maybe_reap(self) -> None:
        """`reap_stale`, at most once per heartbeat interval."""
        now = time.time()
        if now >= self._next_reap:
            self._next_reap = now + self.config.heartbeat_interval
            self.reap_stale(now)

    def reap_stale(self, now: float | None = None) -> int:
        """Fail RUNNING trials whose worker went silent, and retry them.

        A trial is reaped when its heartbeat is older than ``heartbeat_timeout`` on two
        looks at least a heartbeat interval apart. A storage outage stops every heartbeat
        at once; when it ends, live workers beat again within an interval and are spared,
        while a dead worker's trial is reaped on the next look. A silent worker is not the
        trial's fault, so this does not use up the member's ``max_retries``.
        """
        now = time.time() if now is None else now
        deadline = now - self.config.heartbeat_timeout
        study_id = self.study.id
        stale = self.storage.read(
            lambda c: Transaction(c, study_id, lock_study=False).running(
                heartbeat_before=deadline
            )
        )
        suspects: dict[tuple[int, float | None], float] = {}
        reaped = 0
        for trial in stale:
            key = (trial.id, trial.heartbeat_at)
            first_seen = self._suspects.get(key, now)
            if now - first_seen >= self.config.heartbeat_interval:
                age = now - (trial.heartbeat_at or now)
                reason = f"lost: no heartbeat from worker {trial.worker} for {age:.0f}s"
                reaped += self.fail_lost(trial, reason, counts=False)
            else:
                suspects[key] = first_seen
        self._suspects = suspects
        return reaped

    def fail_lost(self, trial: FrozenTrial, reason: str, *, counts: bool = True) -> bool:
        """Fail a RUNNING trial whose worker is gone; its member retries it.

        An EVALUATING trial whose evaluator went silent or was interrupted
        (``counts=False``) goes back to TRAINED: its training is kept, and its claim is
        revoked so the evaluator's late result is refused. One whose evaluator crashed or
        timed out (``counts=True``) fails like a training, using up a retry, so an
        evaluation that kills its worker every time ends instead of looping.
        """
        assert trial.claim is not None
        if trial.state == TrialState.EVALUATING and not counts:
            return self._requeue_evaluation(trial, reason)
        return self.tell_failure(Claimed(trial, trial.claim), reason, counts=counts, lost=True)

    def _requeue_evaluation(self, trial: FrozenTrial, reason: str) -> bool:
        def work(tx: Transaction) -> bool:
            return tx.update_trial(trial.id, expect_state=TrialState.EVALUATING,
                                   expect_claim=trial.claim, state=TrialState.TRAINED,
                                   claim=None, heartbeat_at=None)

        requeued = self.storage.write(self.study.id, work)
        if requeued:
            _log.warning("evaluation of trial %s goes back to the queue: %s", trial.id, reason)
        return requeued

    def fail_worker(self, worker: str, reason: str, *, counts: bool = True) -> int:
        """Fail the RUNNING trials of a worker known to be dead."""
        held = self.storage.get_trials(self.study.id,
                                       [TrialState.RUNNING, TrialState.EVALUATING])
        lost = [t for t in held if t.worker == worker]
        return sum(self.fail_lost(t, reason, counts=counts) for t in lost)
