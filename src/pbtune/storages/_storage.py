"""`Storage`: every piece of controller state, in one database.

One class serves the three backends: a private in-memory SQLite database (``None``), a
SQLite file (the embedded default) and PostgreSQL; SQLAlchemy Core keeps them one code path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    ScalarSelect,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from pbtune._errors import DuplicatedStudyError, StorageError, StudyNotFoundError
from pbtune.storages._clock import SYSTEM_CLOCK, Clock, stamp
from pbtune.storages._engine import create_storage_engine, normalize_url
from pbtune.storages._faults import explain, gave_up
from pbtune.storages._gate import WriteGate
from pbtune.storages._lender import ConnectionLender
from pbtune.storages._planner import tidy
from pbtune.storages._records import (
    HeldTrial,
    MemberRecord,
    MemberState,
    NewTrial,
    StudyRecord,
    StudyState,
)
from pbtune.storages._rows import row_to_trial
from pbtune.storages._schema import (
    create_or_check,
    members,
    reports,
    studies,
    trials,
)
from pbtune.storages._transient import at_connection_limit, is_transient, short
from pbtune.storages._txn import Look, Transaction
from pbtune.trial import FrozenTrial, TrialState

_log = logging.getLogger("pbtune.storage")
T = TypeVar("T")

# Transient errors (a locked SQLite file, a PostgreSQL restart or serialization failure)
# are retried with bounded exponential backoff before they reach the user: at least
# RETRY_ATTEMPTS times and for at least RETRY_FOR_S, so a server restart or a failover
# mid-study is ridden out. Opening a storage tries OPEN_ATTEMPTS times only.
RETRY_ATTEMPTS = 8
RETRY_FOR_S = 60.0
RETRY_BASE_DELAY_S = 0.05
RETRY_MAX_DELAY_S = 5.0
OPEN_ATTEMPTS = 3


class Storage:
    """Controller state in a database: ``Storage(None)`` (memory),
    ``Storage("sqlite:///pbtune.db")`` or ``Storage("postgresql://user@host/db")``."""

    def __init__(self, url: str | None = None, *, clock: Clock | None = None,
                 application_name: str = "pbtune") -> None:
        self.url = normalize_url(url) if url is not None else None
        # What the study's controllers read for time; a simulation's is virtual.
        self.clock = clock or SYSTEM_CLOCK
        self._engine = create_storage_engine(self.url, application_name=application_name)
        # One shared connection serves an in-memory database: threads take turns.
        self._lock: threading.RLock | None = threading.RLock() if self.url is None else None
        # PostgreSQL: one connection at a time, closed when idle (see `ConnectionLender`).
        self._lender = (ConnectionLender(self._engine)
                        if self._engine.dialect.name == "postgresql" else None)
        self._gate = _write_gate(self._engine)
        try:
            self._prepare_schema()
        except BaseException:
            self.dispose()  # a storage that cannot be opened keeps no file open
            raise

    def __repr__(self) -> str:
        shown = self._engine.url.render_as_string(hide_password=True) if self.url else "memory"
        return f"Storage({shown!r})"

    def dispose(self) -> None:
        """Close pooled connections (before forking, or when done)."""
        if self._lender is not None:
            self._lender.close()
        self._engine.dispose()
        if self._gate is not None:
            self._gate.close()

    # -- transactions ------------------------------------------------------------------------
    @contextmanager
    def _connect(self, *, write: bool, gate: bool = True) -> Iterator[Connection]:
        lock = self._lock
        if lock is not None:
            lock.acquire()
        try:
            # Opening and creating a study skip the gate: it is for the busy trial path,
            # and no file is written beside a database that pbtune refuses to open.
            gated = self._gate.held() if write and gate and self._gate else nullcontext()
            connect = self._lender.lend if self._lender else self._engine.connect
            with gated, connect() as connection:
                if write:
                    connection = connection.execution_options(pbtune_write=True)
                with connection.begin():
                    yield connection
        finally:
            if lock is not None:
                lock.release()

    def _retry(self, operation: Callable[[], T], *, opening: bool = False) -> T:
        delay = RETRY_BASE_DELAY_S
        began = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return operation()
            except DBAPIError as error:
                # Only transient errors are retried; any other database error (a damaged
                # file, a full disk, no permission) leaves pbtune as one clear line.
                if isinstance(error, IntegrityError) or not is_transient(error):
                    raise StorageError(
                        explain(error, repr(self), self._sqlite_path(), opening=opening)
                    ) from error
                # A server with no connection to spare is busy, not unreachable: opening
                # waits for one as long as a running study would.
                patient = not opening or at_connection_limit(error)
                attempts, for_s = (RETRY_ATTEMPTS, RETRY_FOR_S) if patient else (OPEN_ATTEMPTS, 0.0)
                waited_s = time.monotonic() - began
                if attempt >= attempts and waited_s >= for_s:
                    raise StorageError(gave_up(error, repr(self), attempts=attempt,
                                               waited_s=waited_s, opening=opening)) from error
                # Opening fails fast with one clear error; retries are not news there.
                _log.log(logging.WARNING if patient else logging.DEBUG,
                         "storage busy or unreachable (%s); retrying in %.2fs",
                         short(error), delay)
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY_S)

    def write(self, study_id: int, work: Callable[[Transaction], T], *, lock: bool = True) -> T:
        """Run ``work`` in one write transaction on the study, retried on transient errors.

        ``work`` may run more than once, so it must not have effects outside the database.
        """

        tidy_due = False

        def attempt() -> T:
            nonlocal tidy_due
            with self._connect(write=True) as connection:
                transaction = Transaction(connection, study_id, lock_study=lock,
                                          clock=self.clock)
                result = work(transaction)
            tidy_due = transaction.tidy_due  # committed
            return result

        result = self._retry(attempt)
        if tidy_due:
            self._tidy()
        return result

    def _tidy(self) -> None:
        """After a write that took a study's trials to a mark (see `_planner`): best
        effort, a decision never fails for it. On the process's one connection, in
        autocommit mode for the while (VACUUM runs in no transaction)."""
        connect = self._lender.lend if self._lender else self._engine.connect
        try:
            with connect() as connection:
                level = connection.default_isolation_level
                connection.execution_options(isolation_level="AUTOCOMMIT")
                try:
                    tidy(connection)
                finally:
                    connection.rollback()  # ends SQLAlchemy's autobegun one: nothing to undo
                    connection.execution_options(isolation_level=level)
        except DBAPIError as error:
            _log.debug("the study's tables were not tidied: %s", short(error))

    def _reading(self, connection: Connection, study_id: int) -> Transaction:
        """A transaction that only reads, on a connection of `_read`."""
        return Transaction(connection, study_id, lock_study=False, clock=self.clock)

    def _read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` on a connection in a read transaction (connections stay in here)."""

        def attempt() -> T:
            with self._connect(write=False) as connection:
                return work(connection)

        return self._retry(attempt)

    # -- schema ------------------------------------------------------------------------------
    def _sqlite_path(self) -> str | None:
        """The SQLite database as its URL names it (":memory:" for memory); None for
        PostgreSQL. Error messages name it."""
        if self._engine.dialect.name != "sqlite":
            return None
        return self._engine.url.database or ":memory:"

    def _prepare_schema(self) -> None:
        # A storage that cannot be reached at start is an error at once, not after the
        # long backoff that rides out an outage mid-study.
        self._retry(self._create_or_check_schema, opening=True)

    def _create_or_check_schema(self) -> None:
        with self._connect(write=True, gate=False) as connection:
            create_or_check(connection, repr(self))

    # -- studies -----------------------------------------------------------------------------
    def create_study(
        self,
        name: str,
        config: dict[str, Any],
        checkpoint_dir: str,
        initial: Sequence[NewTrial],
        now: float,
    ) -> StudyRecord:
        """Create a study and enqueue its first trials, in one transaction."""

        def attempt() -> bool:
            try:
                return insert_study()
            except IntegrityError:  # another process created it first
                raise DuplicatedStudyError(
                    f"a study named {name!r} exists in {self!r}") from None

        def insert_study() -> bool:
            with self._connect(write=True, gate=False) as connection:
                exists = connection.execute(
                    select(studies.c.id).where(studies.c.name == name)
                ).first()
                if exists is not None:
                    raise DuplicatedStudyError(f"a study named {name!r} exists in {self!r}")
                key = connection.execute(
                    insert(studies).values(
                        name=name,
                        config=config,
                        state=StudyState.RUNNING.value,
                        error=None,
                        checkpoint_dir=checkpoint_dir,
                        created_at=now,
                    )
                ).inserted_primary_key
                assert key is not None
                study_id = int(key[0])
                members_of = sorted({t.member for t in initial})
                connection.execute(
                    insert(members),
                    [
                        {"study_id": study_id, "member": m, "latest_complete_id": None,
                         "failures": 0, "state": MemberState.ACTIVE.value}
                        for m in members_of
                    ],
                )
                tx = Transaction(connection, study_id, lock_study=False, clock=self.clock)
                for new in initial:
                    tx.add_trial(new, now)
                return tx.tidy_due

        if self._retry(attempt):
            self._tidy()
        return self.get_study(name)

    def get_study(self, name: str) -> StudyRecord:
        row = self._read(
            lambda c: c.execute(select(studies).where(studies.c.name == name)).mappings().first()
        )
        if row is None:
            known = [s.name for s in self.list_studies()]
            hint = f"studies here: {', '.join(map(repr, known))}" if known else "it holds none"
            raise StudyNotFoundError(f"no study named {name!r} in {self!r}; {hint}")
        return _study(row)

    def get_study_state(self, study_id: int) -> StudyState:
        return self._read(lambda c: self._reading(c, study_id).study_state())

    def get_study_by_id(self, study_id: int) -> StudyRecord:
        row = self._read(
            lambda c: c.execute(select(studies).where(studies.c.id == study_id)).mappings().one()
        )
        return _study(row)

    def list_studies(self) -> list[StudyRecord]:
        rows = self._read(
            lambda c: list(c.execute(select(studies).order_by(studies.c.id)).mappings())
        )
        return [_study(r) for r in rows]

    def set_study_state(self, study_id: int, state: StudyState, error: str | None = None) -> None:
        self.write(study_id, lambda tx: tx.set_study_state(state, error))

    def delete_study(
        self, study_id: int, *, unless_beat_within: float | None = None
    ) -> list[HeldTrial]:
        """Delete every row of the study (its trials' reports, its trials, its members and
        the study) in one transaction, nothing of other studies.

        With ``unless_beat_within``, a study with a trial that a worker holds and beat for
        within that many seconds (by the database's clock) is left as it is, and those
        trials are returned, with their ``silence``; an empty list means it was deleted.
        Its checkpoints are the caller's to delete.
        """

        def work(tx: Transaction) -> list[HeldTrial]:
            if unless_beat_within is not None:
                busy = [h for h in tx.held(silent_for=0.0)
                        if h.silence is not None and h.silence <= unless_beat_within]
                if busy:
                    return busy
            tx.delete_study_rows()
            return []

        return self.write(study_id, work)

    # -- trials (reads) ----------------------------------------------------------------------
    def find_trial(self, study_id: int, trial_id: int) -> FrozenTrial | None:
        """The study's trial ``trial_id`` (its number in the study); None if it has none."""
        return self._read(lambda c: self._reading(c, study_id).trial(trial_id))

    def get_trial(self, study_id: int, trial_id: int) -> FrozenTrial:
        """The study's trial ``trial_id`` (its number in the study)."""
        found = self.find_trial(study_id, trial_id)
        if found is None:
            raise StorageError(f"no trial {trial_id} in study {study_id} of {self!r}")
        return found

    def get_trials(
        self, study_id: int, states: Sequence[TrialState] | None = None
    ) -> list[FrozenTrial]:
        query = select(trials).where(trials.c.study_id == study_id).order_by(trials.c.number)
        if states is not None:
            query = query.where(trials.c.state.in_([TrialState(s).value for s in states]))
        rows = self._read(lambda c: list(c.execute(query).mappings()))
        return [row_to_trial(r) for r in rows]

    def get_trials_since(
        self, study_id: int, after: int, also: Collection[int] = ()
    ) -> list[FrozenTrial]:
        """The study's trials numbered above ``after``, and those numbered in ``also``, by
        number: what changed since a look that saw every trial up to ``after`` (and found
        those in ``also`` unfinished). Trials are numbered in the order their transactions
        commit, so none numbered lower appears later."""
        query = (
            select(trials)
            .where(trials.c.study_id == study_id,
                   or_(trials.c.number > after, trials.c.number.in_(sorted(also))))
            .order_by(trials.c.number)
        )
        rows = self._read(lambda c: list(c.execute(query).mappings()))
        return [row_to_trial(r) for r in rows]

    def get_members(self, study_id: int) -> list[MemberRecord]:
        return self._read(lambda c: self._reading(c, study_id).all_members())

    def get_population(self, study_id: int) -> list[FrozenTrial]:
        return self._read(lambda c: self._reading(c, study_id).population())

    def count_states(self, study_id: int) -> dict[TrialState, int]:
        query = (
            select(trials.c.state, func.count())
            .where(trials.c.study_id == study_id)
            .group_by(trials.c.state)
        )
        rows = self._read(lambda c: list(c.execute(query)))
        counts = {state: 0 for state in TrialState}
        for state, count in rows:
            counts[TrialState(state)] = int(count)
        return counts

    def count_active(self, study_id: int) -> int:
        """Trials not finished yet: QUEUED, RUNNING, TRAINED and EVALUATING (an index range,
        however many trials have ended)."""
        return self._read(lambda c: self._reading(c, study_id).count_active())

    def best_trial(
        self, study_id: int, mode: str, *, min_end_step: int | None = None
    ) -> FrozenTrial | None:
        """The COMPLETE trial with the best fitness (ending at ``min_end_step`` or later)."""
        order = trials.c.fitness.desc() if mode == "max" else trials.c.fitness.asc()
        query = (
            select(trials)
            .where(trials.c.study_id == study_id, trials.c.state == TrialState.COMPLETE.value)
            .order_by(order, trials.c.end_step.desc(), trials.c.number)
            .limit(1)
        )
        if min_end_step is not None:
            query = query.where(trials.c.end_step >= min_end_step)
        row = self._read(lambda c: c.execute(query).mappings().first())
        return row_to_trial(row) if row is not None else None

    # -- workers ---------------------------------------------------------------------------
    def look(self, study_id: int, claimable: tuple[TrialState, ...]) -> Look:
        """An idle worker's look at the study (see `Look`): one statement, no write lock."""
        return self._read(lambda c: self._reading(c, study_id).look(claimable))

    def queue_state(self, study_id: int) -> tuple[StudyState, dict[TrialState, int]]:
        """The study's state and how many of its trials are in each active state (a look
        that takes no write lock)."""
        return self._read(lambda c: self._reading(c, study_id).queue_state())

    def held_trials(self, study_id: int, *, silent_for: float | None = None
                    ) -> list[HeldTrial]:
        """Trials a worker holds (RUNNING or EVALUATING) with their claims; with
        ``silent_for``, only those without a heartbeat for longer than that many seconds,
        with their ``silence``. The database judges by its own clock, the one that stamped
        the heartbeats, so clocks that disagree between machines do not matter (or by
        `clock`, where the storage has a virtual one: see `pbtune.storages._clock`)."""
        return self._read(lambda c: self._reading(c, study_id).held(silent_for=silent_for))

    def heartbeat(self, study_id: int, trial_id: int, claim: str) -> bool:
        """Refresh a held (RUNNING or EVALUATING) trial's heartbeat, stamped by the
        database's clock (or by `clock`: see `pbtune.storages._clock`); False if it is no
        longer this claim's."""
        query = (
            update(trials)
            .where(
                trials.c.study_id == study_id,
                trials.c.number == trial_id,
                trials.c.claim == claim,
                trials.c.state.in_((TrialState.RUNNING.value, TrialState.EVALUATING.value)),
            )
            .values(heartbeat_at=stamp(self.clock.stamp()))
        )

        def attempt() -> bool:
            with self._connect(write=True) as connection:
                return connection.execute(query).rowcount == 1

        return self._retry(attempt)

    def add_report(self, study_id: int, trial_id: int, step: int,
                   values: dict[str, float]) -> None:
        key = _row_key(study_id, trial_id)

        def attempt() -> None:
            with self._connect(write=True) as connection:
                connection.execute(
                    insert(reports).values(trial_id=key, step=step, metrics=values)
                )

        self._retry(attempt)

    def get_reports(self, study_id: int, trial_id: int) -> list[tuple[int, dict[str, float]]]:
        query = (
            select(reports.c.step, reports.c.metrics)
            .where(reports.c.trial_id == _row_key(study_id, trial_id))
            .order_by(reports.c.step, reports.c.id)
        )
        rows = self._read(lambda c: list(c.execute(query)))
        return [(int(step), dict(values)) for step, values in rows]


def _row_key(study_id: int, trial_id: int) -> ScalarSelect[Any]:
    """The row key of the study's trial ``trial_id``, which reports refer to."""
    return select(trials.c.id).where(
        trials.c.study_id == study_id, trials.c.number == trial_id
    ).scalar_subquery()


def _study(row: Any) -> StudyRecord:
    return StudyRecord(
        id=row["id"],
        name=row["name"],
        config=dict(row["config"]),
        state=StudyState(row["state"]),
        error=row["error"],
        checkpoint_dir=row["checkpoint_dir"],
        created_at=row["created_at"],
        stop_reason=row["stop_reason"],
    )


def _write_gate(engine: Engine) -> WriteGate | None:
    """The write gate of an SQLite file (see `WriteGate`); None for other databases."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    if str(url.query.get("uri", "")).lower() in ("true", "1"):
        return None  # a URI names the file in its own syntax: SQLite's locking alone
    return WriteGate(os.path.abspath(url.database))
