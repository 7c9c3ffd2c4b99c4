"""The controller: ask (claim a trial), tell (record it and decide the member's next).

Every decision is written as a row in the same transaction as the result that caused it,
so a killed worker or controller never loses a decision, and a restarted one finds the
study exactly where it was. A worker talks to the study through these methods only.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbtune._errors import CheckpointGoneError, TrialFailedError
from pbtune.checkpoints import CheckpointStore, Location, open_store
from pbtune.controller._claims import DONE, WAIT, Claimed, Done, Result, Role, Wait
from pbtune.controller._config import StudyConfig
from pbtune.controller._lost import LostTrials, Reaper
from pbtune.controller._members import (
    after_failure,
    collect_garbage,
    enqueue_next,
    maybe_finish_study,
)
from pbtune.controller._metrics import check_metrics, clean_metrics, fitness_of
from pbtune.controller._run import TrialRun, error_text
from pbtune.controller._stopping import StopCheck
from pbtune.storages import HeldTrial, Holder, Storage, StudyRecord, StudyState, Transaction
from pbtune.trial import FrozenTrial, TrialState

_log = logging.getLogger("pbtune.controller")


class Controller(LostTrials):
    """ask / start / tell / heartbeat over a `Storage`, for one study."""

    def __init__(self, storage: Storage, study: StudyRecord, config: StudyConfig,
                 store: CheckpointStore | None = None) -> None:
        self.storage = storage
        self.study = study
        self.config = config
        self.clock = storage.clock  # real time, or a simulation's virtual clock
        # The study's checkpoints (``store``: another, as a simulation keeps in memory).
        self._store = store or open_store(config.checkpoint_root, study.checkpoint_dir)
        self._stop_check = StopCheck(config)
        # The population as the last decision here that committed saw it: the next reads
        # only what changed since (see `Transaction.population`).
        self._population: dict[int, FrozenTrial] = {}
        # Deletes a collected checkpoint after the commit that forgot it; see
        # `deleting_in_background` (a directory left by a crash is swept at the end).
        self._delete: Callable[[Location], None] = self._store.remove
        self._reaper = Reaper(
            config,
            lambda silent_for: storage.held_trials(study.id, silent_for=silent_for),
            lambda held, reason: self.fail_lost(held, reason, counts=False),
            monotonic=self.clock.monotonic,
        )

    def close(self) -> None:
        """Free what this process holds for the study (a remote store's download cache)."""
        self._store.close()

    # -- ask ---------------------------------------------------------------------------------
    def ask(self, worker: str, role: Role = "both") -> Claimed | Wait | Done:
        """Claim work for ``worker``: a trial to evaluate or to train (see `Role`).

        A look that only reads comes first, so idle workers polling a busy study do not
        queue for the write lock.
        """
        self.maybe_reap()
        look = self.storage.look(self.study.id, self._claimable(role))
        if look.state != StudyState.RUNNING:
            return DONE
        if not look.claimable:
            return WAIT if look.active else DONE
        return self.claim(worker, role)

    def claim(self, worker: str, role: Role = "both") -> Claimed | Wait | Done:
        """`ask` without the look first: for a busy worker that expects work queued."""
        token = uuid.uuid4().hex
        tries = itertools.count()

        def work(tx: Transaction) -> Claimed | Wait | Done:
            fresh = next(tries) == 0
            if tx.study_state() != StudyState.RUNNING:
                return DONE
            claimed = self._claim(tx, worker, token, role, fresh=fresh)
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

    def _claim(self, tx: Transaction, worker: str, token: str, role: Role, *,
               fresh: bool = False, known: Sequence[FrozenTrial] = ()) -> Claimed | None:
        """Claim under ``token`` (``fresh``: in the first transaction that uses it); a
        trial's parent is taken from ``known`` (read in this transaction) if it is there."""
        now = self.clock.time()
        for state in self._claimable(role):
            if state == TrialState.TRAINED:
                held = tx.claim_next_evaluation(worker, token, now)
            else:
                held = tx.claim_next(worker, token, now, fresh=fresh)
            if held is not None:
                return _claimed(tx, held, known)
        return None

    # -- a trial's run -------------------------------------------------------------------------
    def start(self, claimed: Claimed) -> TrialRun:
        """The run of claimed work: a trial to train, or a trained one to evaluate."""
        return TrialRun(self, self._store, claimed)

    def parent_checkpoint(self, claimed: Claimed) -> Path | None:
        """The local directory the trial warm-starts from (a remote parent is downloaded
        and verified first).

        A parent checkpoint found missing or damaged (deleted from outside pbtune) is
        recorded as gone, once (`Transaction.checkpoint_gone`), and `CheckpointGoneError`
        says so in one line: the trial's retry then warm-starts from another parent (see
        `retry_of`), and no later decision copies it. Any other error of the store (a
        network hiccup) is raised as it is."""
        trial, parent = claimed.trial, claimed.parent
        if trial.parent_id is None:
            return None
        if parent is None:
            parent = self.storage.get_trial(self.study.id, trial.parent_id)
        assert parent.state == TrialState.COMPLETE, "children are made from COMPLETE parents"
        retried = f"trial {trial.id} of member {trial.member} is retried from another parent"
        if parent.checkpoint is None:
            where = (f" ({parent.checkpoint_gone}) is gone, as recorded before"
                     if parent.checkpoint_gone else " is gone")
            raise CheckpointGoneError(f"the checkpoint of trial {parent.id}{where}; {retried}")
        try:
            return self._store.open(parent.checkpoint, parent.id)
        except CheckpointGoneError as error:
            reference = parent.checkpoint
            first = self.storage.write(
                self.study.id, lambda tx: tx.checkpoint_gone(parent.id, reference))
            recorded = "pbtune recorded it as gone" if first else "it was recorded as gone"
            raise CheckpointGoneError(f"{error}; {recorded}, and {retried}") from None

    def heartbeat(self, claimed: Claimed) -> bool:
        """Keep a held trial fresh (stamped by the database's clock: see `Reaper`);
        False once the claim is no longer held."""
        return self.storage.heartbeat(self.study.id, claimed.trial.id, claimed.claim)

    def report(self, trial_id: int, step: int, values: Mapping[str, float | None]) -> None:
        """Store intermediate metrics of a running trial (`Trial.report`)."""
        self.storage.add_report(self.study.id, trial_id, step, dict(values))  # type: ignore[arg-type]

    def check(self, claimed: Claimed, metrics: Any) -> Result:
        """What a result of ``claimed`` records: its metrics, and its fitness. A training
        result of a study with an evaluate function has no fitness yet (None); an
        evaluation's metrics are merged over training's (evaluation wins on a clash).
        Raises `TrialFailedError` for anything but a dict of finite metrics, or for a
        trial that is not held (nothing to tell)."""
        trial = claimed.trial
        if trial.state == TrialState.EVALUATING:
            scored = clean_metrics(metrics, self.config, "the evaluate function")
            return Result(*fitness_of({**(trial.metrics or {}), **scored}, self.config))
        if trial.state != TrialState.RUNNING:
            raise TrialFailedError(f"trial {trial.id} is {trial.state.value}: nothing to tell")
        if self.config.evaluated:
            return Result(clean_metrics(metrics, self.config), None, trained=True)
        return Result(*check_metrics(metrics, self.config))

    # -- tell ------------------------------------------------------------------------------
    def tell(self, claimed: Claimed, metrics: Mapping[str, float] | Result,
             checkpoint: Location | None = None) -> bool:
        """Record the result of claimed work: a trained trial, or an evaluated one.

        ``metrics`` is what the training (or, for an EVALUATING trial, the evaluate)
        function returned; it is checked first (`check`), unless it is the `Result` that
        ``check`` made of it. ``checkpoint`` is the trained trial's committed checkpoint.
        A final result (COMPLETE) decides the member's next trial in the same
        transaction; a training result that waits for its evaluation (TRAINED) decides
        nothing yet. Returns False (and changes nothing) when the trial is no longer this
        claim's: it was failed as lost and retried, so a late result must not overwrite it.
        """
        return self.tell_and_ask(claimed, metrics, checkpoint, None)[0]

    def tell_and_ask(
        self,
        claimed: Claimed,
        metrics: Mapping[str, float] | Result,
        checkpoint: Location | None,
        worker: str | None,
        role: Role = "both",
    ) -> tuple[bool, Claimed | None]:
        """`tell`, then, in the same transaction, claim the next work for ``worker``.

        Returns (told, the next claimed work or None). A worker that goes straight on
        saves a transaction per trial; None means: ask again (nothing queued, or done).
        """
        result = metrics if isinstance(metrics, Result) else self.check(claimed, metrics)
        if result.trained:
            return self._tell_trained(claimed, result.metrics, checkpoint, worker, role)
        if claimed.trial.state == TrialState.EVALUATING:
            checkpoint = claimed.trial.checkpoint  # the trained trial's own
        return self._tell_complete(claimed, result.metrics, result.fitness, checkpoint,
                                   worker, role)

    def _tell_complete(self, claimed: Claimed, metrics: dict[str, float], fitness: float | None,
                       checkpoint: Location | None, worker: str | None, role: Role
                       ) -> tuple[bool, Claimed | None]:
        trial = claimed.trial
        token = uuid.uuid4().hex  # outside `work`: a retried transaction reuses it
        tries = itertools.count()

        def work(tx: Transaction) -> _Told:
            fresh = next(tries) == 0
            now = self.clock.time()  # inside: the transaction may have waited for the lock
            finished = tx.complete(trial, claimed.claim, metrics=metrics, fitness=fitness,
                                   checkpoint=checkpoint, now=now)
            if finished is None:
                # A retried transaction whose first COMMIT went through (the connection
                # dropped before the reply) finds its own result: that is success.
                mine = _recorded(tx, claimed, TrialState.COMPLETE)
                if mine is None or (mine.fitness, mine.checkpoint) != (fitness, checkpoint):
                    return _Told(False)
                return _Told(True, following=self._reclaimed(tx, token, worker))
            tx.member_completed(trial.member, trial.id)
            population = tx.population({**self._population, finished.id: finished})
            told = _Told(True, population=population)
            # A study that ended (a stop rule, `Study.stop`, or failed) records results
            # that come in from trials running elsewhere, and decides nothing: the
            # member's next trial is decided if the study runs again (see `reopen`).
            if tx.study_state() == StudyState.RUNNING:
                told.stopped = self._stop_check(tx, finished)
                if told.stopped is None and not enqueue_next(
                        tx, self.config, finished, population, now, told.notes):
                    maybe_finish_study(tx)
            told.garbage.extend(collect_garbage(tx, self.config, population))
            if worker is not None and tx.study_state() == StudyState.RUNNING:
                # Decisions are serialized, so the population read above is current: the
                # next trial's parent is usually in it.
                told.following = self._claim(tx, worker, token, role, fresh=fresh,
                                             known=population)
            return told

        told = self.storage.write(self.study.id, work)
        if told.population:  # committed: the next decision here starts from it
            self._population = {t.id: t for t in told.population}
        if not told.told:
            _log.warning(
                "refused the result of trial %s: it is no longer held by this worker "
                "(it was failed as lost and retried, or put back in the queue)", trial.id)
            return False, None
        for note in told.notes:  # after the commit: a retried transaction says it once
            _log.warning(note)
        if told.stopped is not None:
            _log.info("study %r stopped: %s", self.study.name, told.stopped)
        for old in told.garbage:
            self._delete(old.checkpoint)
        return True, told.following

    def _tell_trained(self, claimed: Claimed, metrics: dict[str, float],
                      checkpoint: Location | None, worker: str | None, role: Role
                      ) -> tuple[bool, Claimed | None]:
        """Record that a trial of an evaluated study is trained: its checkpoint waits for
        an evaluator (TRAINED). Nothing is decided until it is evaluated.

        A ``worker`` that evaluates (role "both") takes the evaluation at once, in the
        same transaction (the trial becomes EVALUATING under a new claim); a trainer
        (role "train") claims its next trial to train instead.
        """
        trial = claimed.trial
        token = uuid.uuid4().hex
        evaluate_now = worker is not None and role == "both"

        def work(tx: Transaction) -> tuple[bool, Claimed | None]:
            if evaluate_now:
                held = tx.evaluate_at_once(trial, claimed.claim, metrics=metrics,
                                           checkpoint=checkpoint, evaluator=token,
                                           now=self.clock.time())
                if held is not None:
                    return True, Claimed(held.trial, token, None)
            elif tx.mark_trained(trial, claimed.claim, metrics=metrics,
                                 checkpoint=checkpoint) is not None:
                following = None
                if worker is not None and tx.study_state() == StudyState.RUNNING:
                    following = self._claim(tx, worker, token, role)
                return True, following
            current = tx.trial(trial.id)
            if current is not None and current.checkpoint == checkpoint and (
                current.state in (TrialState.TRAINED, TrialState.EVALUATING,
                                  TrialState.COMPLETE)
            ):  # a retried transaction that finds its own result (the checkpoint is this
                # trial's own), even if an evaluator has moved it on since
                return True, self._reclaimed(tx, token, worker)
            return False, None

        told, following = self.storage.write(self.study.id, work)
        if not told:
            _log.warning("refused the training result of trial %s: it is no longer held by "
                         "this worker (it was failed as lost and retried, or put back in the "
                         "queue)", trial.id)
        return told, following

    @staticmethod
    def _reclaimed(tx: Transaction, token: str, worker: str | None) -> Claimed | None:
        """The work a retried transaction had already claimed under ``token``."""
        held = tx.held_by(token) if worker is not None else None
        return _claimed(tx, held) if held is not None else None

    def tell_failure(
        self, claimed: Claimed, error: BaseException | str, *, counts: bool = True,
        lost: bool = False, state: TrialState | None = None,
    ) -> bool:
        """Record a failed trial with ``error`` (an exception's traceback or a message);
        the member retries it (bounded) or stops.

        ``counts=False`` (an interrupted run) retries without using up ``max_retries``.
        ``lost=True`` (failed on behalf of a dead or silent worker) also revokes the claim,
        so that the worker, should it come back, has its late result refused. The trial
        becomes ``state``: by default LOST for a lost trial, else FAILED (the code's fault).
        """
        text = error_text(error)
        ended = state or (TrialState.LOST if lost else TrialState.FAILED)

        def work(tx: Transaction) -> bool:
            now = self.clock.time()
            failed = tx.fail(claimed.trial, claimed.claim, error=text, now=now, revoke=lost,
                             state=ended)
            if failed is None:
                mine = _recorded(tx, claimed, ended, revoked=lost)
                return mine is not None and mine.error == text
            after_failure(tx, self.config, claimed.trial, now, counts=counts)
            return True

        told = self.storage.write(self.study.id, work)
        if not told:
            _log.warning("refused the failure of trial %s: no longer held by this worker",
                         claimed.trial.id)
        elif claimed.trial.checkpoint is not None:
            self._delete(claimed.trial.checkpoint)  # trained, then its evaluation failed
        return told

    def release(self, claimed: Claimed) -> bool:
        """Give claimed work back: a trial to train that never started to the queue, an
        evaluation (never started, or whose evaluator went silent) to the trained trials
        waiting for one. False if the claim no longer holds it."""
        return self.storage.write(
            self.study.id, lambda tx: tx.requeue(claimed.trial, claimed.claim) is not None,
            lock=False,
        )

    @contextmanager
    def deleting_in_background(self) -> Iterator[None]:
        """Delete collected checkpoints in a background thread while inside, off the
        trial's path; on exit, what is queued is deleted.

        Deleting is not urgent: the database already forgot them, and whatever a killed
        worker leaves behind is swept at the end of the run.
        """
        pending: queue.SimpleQueue[Location | None] = queue.SimpleQueue()

        def run() -> None:
            while (path := pending.get()) is not None:
                try:
                    self._store.remove(path)
                except Exception as error:  # never fatal: the end-of-run sweep retries
                    _log.warning("could not delete checkpoint %s: %s", path, error)

        thread = threading.Thread(target=run, name="pbtune-discard", daemon=True)
        thread.start()
        self._delete = pending.put
        try:
            yield
        finally:
            self._delete = self._store.remove
            pending.put(None)
            thread.join()

    # -- the monitor's reads ----------------------------------------------------------------
    def study_state(self) -> StudyState:
        return self.storage.get_study_state(self.study.id)

    def completed(self) -> int:
        """How many trials are COMPLETE."""
        return self.storage.count_states(self.study.id)[TrialState.COMPLETE]


def _claimed(tx: Transaction, held: HeldTrial, known: Sequence[FrozenTrial] = ()
             ) -> Claimed:
    """A held trial as claimed work; a trial to train comes with its parent: one of
    ``known`` (current trials of this transaction), or read here."""
    trial = held.trial
    if trial.state == TrialState.EVALUATING or trial.parent_id is None:
        return Claimed(trial, held.claim, None)
    parent = next((t for t in known if t.id == trial.parent_id), None)
    return Claimed(trial, held.claim, parent or tx.trial(trial.parent_id))


def _recorded(tx: Transaction, claimed: Claimed, state: TrialState, *,
              revoked: bool = False) -> FrozenTrial | None:
    """The trial, if this claim already recorded it in ``state`` (and, with ``revoked``,
    cleared the claim as it did so)."""
    found = tx.trial_with_claim(claimed.trial.id)
    expected = None if revoked else claimed.claim
    if found is not None and found[0].state == state and found[1] == expected:
        return found[0]
    return None


@dataclass
class _Told:
    """What a final result's transaction did: whether it was recorded, the population it
    decided with, the checkpoints it collected (deleted after the commit), the work it
    claimed next, what to log, and whether it stopped the study."""

    told: bool
    population: list[FrozenTrial] = field(default_factory=list)
    garbage: list[Holder] = field(default_factory=list)
    following: Claimed | None = None
    notes: list[str] = field(default_factory=list)
    stopped: str | None = None  # why a stop rule ended the study with this result
