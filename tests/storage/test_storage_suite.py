"""One storage suite, run against every backend: memory, a SQLite file and PostgreSQL.

A new backend is one more entry in ``BACKENDS`` (tests/conftest.py).
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Connection, inspect, select, text, update

import pbtune
from pbtune import Storage, StorageError, StudyNotFoundError, TrialState
from pbtune.storages import (
    SYSTEM_CLOCK,
    HeldTrial,
    Look,
    MemberState,
    NewTrial,
    StudyState,
    Transaction,
    VirtualClock,
)
from pbtune.storages import _storage as storage_module
from pbtune.storages._clock import DatabaseNow
from pbtune.storages._schema import SCHEMA_VERSION, meta, metadata
from pbtune.trial import TRANSITIONS, FrozenTrial

if TYPE_CHECKING:
    from conftest import Backend

PBTUNE_TABLES = {t.name for t in metadata.sorted_tables}

# Strings that trip up quoting, escaping and encodings.
TRICKY = [
    "λ_学习率",
    "it's",
    'say "hi"',
    "back\\slash",
    "new\nline\ttab",
    "emoji 🚀",
    "'; DROP TABLE pbtune_trials; --",
    "",
    "$1 %s %(x)s ?",
]


def new_trials(end_steps: list[int], params: dict[str, Any] | None = None) -> list[NewTrial]:
    return [
        NewTrial(member=m, generation=0, parent_id=None,
                 params=params if params is not None else {"lr": 0.1 * (m + 1), "m": m},
                 start_step=0, end_step=end, decision="initial")
        for m, end in enumerate(end_steps)
    ]


def make_study(storage: Storage, name: str = "s", end_steps: list[int] | None = None,
               **kwargs: Any) -> int:
    record = storage.create_study(
        name, kwargs.pop("config", {"metric": "acc", "mode": "max"}), f"{name}-dir",
        kwargs.pop("initial", new_trials(end_steps or [10, 10, 10])), 1000.0,
    )
    return record.id


def claim_held(storage: Storage, study_id: int, token: str, worker: str = "w"
               ) -> HeldTrial | None:
    """Start the next queued trial for ``worker`` under ``token``, as a controller does."""
    return storage.write(study_id, lambda tx: tx.claim_next(worker, token, time.time()),
                         lock=False)


def claim(storage: Storage, study_id: int, token: str, worker: str = "w") -> FrozenTrial | None:
    held = claim_held(storage, study_id, token, worker)
    return held.trial if held is not None else None


def finish(storage: Storage, trial: FrozenTrial, token: str, fitness: float,
           metrics: dict[str, float] | None = None) -> bool:
    return storage.write(trial.study_id or 0, lambda tx: tx.complete(
        trial, token, fitness=fitness,
        metrics=metrics if metrics is not None else {"acc": fitness}, checkpoint=None,
        now=time.time(),
    )) is not None


def fail(storage: Storage, trial: FrozenTrial, token: str, error: str) -> bool:
    return storage.write(trial.study_id or 0, lambda tx: tx.fail(
        trial, token, error=error, now=time.time())) is not None


def database_time(storage: Storage) -> float:
    """The database's clock now, as the storage stamps heartbeats with it."""
    return float(storage._read(lambda c: c.execute(select(DatabaseNow())).scalar_one()))


def held_claims(storage: Storage, study_id: int) -> dict[int, tuple[str, float | None]]:
    """Each held trial's claim and last heartbeat, by id."""
    return {h.trial.id: (h.claim, h.heartbeat_at) for h in storage.held_trials(study_id)}


def execute(storage: Storage, statement: Any) -> None:
    def work(connection: Connection) -> None:
        connection.execute(statement)

    storage._read(work)


def reopen(backend: Backend, storage: Storage) -> Storage:
    """Open the same database again. An in-memory database exists only behind its one
    `Storage`, so there the schema check is run again on it (the same code path)."""
    if backend.shared:
        return backend.open()
    storage._prepare_schema()
    return storage


# -- schema ------------------------------------------------------------------------------------


def test_schema_is_created_with_its_version(storage: Storage) -> None:
    names = storage._read(lambda c: set(inspect(c).get_table_names()))
    assert names >= PBTUNE_TABLES
    version = storage._read(lambda c: c.execute(
        select(meta.c.value).where(meta.c.key == "schema_version")).scalar_one())
    assert version == str(SCHEMA_VERSION)


def test_reopening_keeps_the_data(backend: Backend, storage: Storage) -> None:
    study_id = make_study(storage, "kept")
    again = reopen(backend, storage)
    assert again.get_study("kept").id == study_id
    assert len(again.get_trials(study_id)) == 3
    rows = again._read(lambda c: c.execute(select(meta)).all())
    assert len(rows) == 1  # the version row was not written twice


@pytest.mark.parametrize("version", ["999", "0", "banana"])
def test_an_unknown_schema_version_is_refused(
    backend: Backend, storage: Storage, version: str
) -> None:
    make_study(storage, "old")
    execute(storage, update(meta).where(meta.c.key == "schema_version").values(value=version))
    with pytest.raises(StorageError) as raised:
        reopen(backend, storage)
    message = str(raised.value)
    assert f"schema version {version!r}" in message
    assert f"this pbtune reads version {SCHEMA_VERSION}" in message
    assert "pbtune will not change it" in message
    # ... and it was not changed
    assert storage._read(lambda c: c.execute(select(meta.c.value)).scalar_one()) == version


def test_a_missing_schema_version_row_is_refused(backend: Backend, storage: Storage) -> None:
    execute(storage, meta.delete())
    with pytest.raises(StorageError, match=r"schema version None"):
        reopen(backend, storage)


def test_pbtune_tables_without_a_version_table_are_refused(
    backend: Backend, storage: Storage
) -> None:
    execute(storage, text("DROP TABLE pbtune_meta"))
    with pytest.raises(StorageError, match=r"without a schema version.*Use a new database"):
        reopen(backend, storage)


def test_many_workers_opening_a_new_database_at_once(backend: Backend) -> None:
    if not backend.shared:
        pytest.skip("an in-memory database cannot be opened twice")
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def open_one() -> None:
        try:
            barrier.wait()
            backend.open()
        except BaseException as error:  # collected and reported below
            errors.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert backend.open().list_studies() == []


# -- studies -----------------------------------------------------------------------------------


def test_create_study_with_initial_trials(storage: Storage) -> None:
    config = {"metric": "acc", "mode": "max", "space": {"lr": {"type": "float"}}}
    record = storage.create_study("first", config, "first-abc", new_trials([10, 10, 10]), 1000.0)
    assert record.name == "first"
    assert record.config == config
    assert record.state == StudyState.RUNNING
    assert record.error is None
    assert record.checkpoint_dir == "first-abc"
    assert record.created_at == 1000.0
    assert storage.get_study_by_id(record.id) == record
    assert storage.list_studies() == [record]

    trials = storage.get_trials(record.id)
    assert [t.number for t in trials] == [0, 1, 2]
    assert [t.member for t in trials] == [0, 1, 2]
    assert [t.id for t in trials] == [0, 1, 2]  # a trial's id is its number in the study
    for t in trials:
        assert t.state == TrialState.QUEUED
        assert t.study_id == record.id
        assert t.generation == 0
        assert t.parent_id is None
        assert t.params == {"lr": 0.1 * (t.member + 1), "m": t.member}
        assert (t.start_step, t.end_step) == (0, 10)
        assert t.decision == "initial"
        assert t.created_at == 1000.0
        assert t.metrics is None and t.fitness is None and t.checkpoint is None
        assert t.worker is None and t.started_at is None
        assert storage.get_trial(record.id, t.id) == t
    members = storage.get_members(record.id)
    assert [(m.member, m.state, m.failures, m.latest_complete_id) for m in members] == [
        (0, MemberState.ACTIVE, 0, None), (1, MemberState.ACTIVE, 0, None),
        (2, MemberState.ACTIVE, 0, None)]
    assert storage.get_population(record.id) == []


def test_trials_since_a_look_are_the_new_ones_and_those_it_found_unfinished(
    storage: Storage,
) -> None:
    other = make_study(storage, "other", [10, 10, 10, 10])
    study_id = make_study(storage, "s", [10, 10, 10, 10])
    a = claim(storage, study_id, "a")
    assert a is not None and finish(storage, a, "a", 1.0)
    seen = storage.get_trials_since(study_id, -1)
    assert [t.id for t in seen] == [0, 1, 2, 3] and seen == storage.get_trials(study_id)
    unfinished = {t.id for t in seen if t.state.is_active}
    assert storage.get_trials_since(study_id, 3, unfinished) == [
        t for t in storage.get_trials(study_id) if t.id in unfinished]
    b = claim(storage, study_id, "b")
    assert b is not None and finish(storage, b, "b", 2.0)
    storage.write(study_id, lambda tx: tx.add_trial(new_trials([20])[0], 2e9))  # id 4
    since = storage.get_trials_since(study_id, 3, unfinished)
    assert [t.id for t in since] == sorted(unfinished | {4})
    assert {t.id: t.state for t in since}[b.id] == TrialState.COMPLETE
    assert all(t.study_id == study_id for t in since)  # nothing of the other study
    assert len(storage.get_trials_since(other, -1)) == 4


def test_studies_are_independent(storage: Storage) -> None:
    a = make_study(storage, "a", [10, 10])
    b = make_study(storage, "b", [10, 10, 10])
    assert [t.number for t in storage.get_trials(b)] == [0, 1, 2]  # numbering per study
    assert len(storage.get_trials(a)) == 2
    trial = claim(storage, b, "tok")
    assert trial is not None and trial.study_id == b
    assert storage.count_states(a)[TrialState.QUEUED] == 2
    assert [s.name for s in storage.list_studies()] == ["a", "b"]


def test_duplicate_study_name_is_refused(storage: Storage) -> None:
    study_id = make_study(storage, "dup")
    with pytest.raises(pbtune.DuplicatedStudyError, match=r"a study named 'dup' exists"):
        make_study(storage, "dup", [5])
    assert len(storage.get_trials(study_id)) == 3
    assert len(storage.list_studies()) == 1


def test_missing_study_lists_the_names_there(storage: Storage) -> None:
    with pytest.raises(StudyNotFoundError, match=r"no study named 'x' .*it holds none"):
        storage.get_study("x")
    make_study(storage, "alpha")
    make_study(storage, "beta")
    with pytest.raises(StudyNotFoundError) as raised:
        storage.get_study("gamma")
    assert "studies here: 'alpha', 'beta'" in str(raised.value)
    assert not str(raised.value).startswith('"')  # not quoted like a KeyError
    assert isinstance(raised.value, KeyError)
    assert isinstance(raised.value, StorageError)


def test_study_state_round_trips(storage: Storage) -> None:
    study_id = make_study(storage)
    storage.set_study_state(study_id, StudyState.FAILED, "boom: 'quoted' λ")
    record = storage.get_study_by_id(study_id)
    assert (record.state, record.error) == (StudyState.FAILED, "boom: 'quoted' λ")
    storage.set_study_state(study_id, StudyState.COMPLETE)
    assert storage.get_study_by_id(study_id).error is None


def test_missing_trial_is_a_storage_error(storage: Storage) -> None:
    a = make_study(storage, "a", [10, 10])
    b = make_study(storage, "b", [10, 10, 10])
    assert storage.get_trial(b, 2).study_id == b
    with pytest.raises(StorageError, match=r"no trial 2 in study"):
        storage.get_trial(a, 2)  # trial 2 of another study is not this one's
    with pytest.raises(StorageError, match=r"no trial 12345 in study"):
        storage.get_trial(a, 12345)


# -- claims --------------------------------------------------------------------------------------


def test_claim_takes_the_smallest_end_step_then_the_lowest_number(storage: Storage) -> None:
    study_id = make_study(storage, end_steps=[30, 10, 20, 10])
    order = []
    while (trial := claim(storage, study_id, f"t{len(order)}")) is not None:
        order.append((trial.end_step, trial.number))
    assert order == [(10, 1), (10, 3), (20, 2), (30, 0)]
    assert claim(storage, study_id, "again") is None


def test_claim_marks_the_trial_running_for_the_worker(storage: Storage) -> None:
    study_id = make_study(storage, end_steps=[10])
    before = time.time()
    held = claim_held(storage, study_id, "token-1", "host:1:abc")
    assert held is not None
    trial = held.trial
    assert trial.state == TrialState.RUNNING
    assert trial.worker == "host:1:abc"
    assert held.claim == "token-1"
    assert trial.started_at is not None and trial.started_at >= before - 1
    assert held.heartbeat_at is not None  # on the database's clock, not the worker's
    assert storage.get_trial(study_id, trial.id) == trial
    assert storage.held_trials(study_id) == [held]
    # the same claim again (a retried transaction) gets the trial it holds
    assert claim_held(storage, study_id, "token-1", "host:1:abc") == held


def test_claims_from_many_threads_take_every_trial_exactly_once(
    backend: Backend, storage: Storage
) -> None:
    n_trials, n_threads = 60, 6
    study_id = make_study(storage, end_steps=[10 * (i % 7 + 1) for i in range(n_trials)])
    handles = [backend.open() if backend.shared else storage for _ in range(n_threads)]
    taken: list[list[tuple[int, str]]] = [[] for _ in range(n_threads)]
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            while True:
                token = f"w{index}-{len(taken[index])}"
                held = claim_held(handles[index], study_id, token, f"w{index}")
                if held is None:
                    return
                assert held.claim == token
                taken[index].append((held.trial.id, token))
        except BaseException as error:  # collected and reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    claimed = [pair for per_thread in taken for pair in per_thread]
    ids = [trial_id for trial_id, _ in claimed]
    assert len(ids) == len(set(ids)) == n_trials
    assert set(ids) == {t.id for t in storage.get_trials(study_id)}
    stored = held_claims(storage, study_id)
    for trial_id, token in claimed:  # the database agrees on who holds each trial
        assert stored[trial_id][0] == token
    assert storage.count_states(study_id)[TrialState.QUEUED] == 0


# -- compare-and-set (fencing) -----------------------------------------------------------------


@pytest.fixture(params=["returning", "read-back"])
def moves(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Transitions by UPDATE ... RETURNING, and by UPDATE then a read (an SQLite older
    than 3.35 has no RETURNING)."""
    if request.param == "read-back":
        init = Transaction.__init__

        def without_returning(self: Transaction, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            self._returning = False

        monkeypatch.setattr(Transaction, "__init__", without_returning)
    return str(request.param)


@pytest.mark.usefixtures("moves")
def test_transitions_are_compare_and_set(storage: Storage) -> None:
    study_id = make_study(storage, end_steps=[10])
    trial = claim(storage, study_id, "right")
    assert trial is not None
    before = storage.get_trial(study_id, trial.id)
    queued = replace(trial, state=TrialState.QUEUED)  # as read before it was claimed

    def complete(seen: FrozenTrial, token: str) -> FrozenTrial | None:
        return storage.write(study_id, lambda tx: tx.complete(
            seen, token, metrics={"acc": 1.0}, fitness=1.0, checkpoint="/ckpt", now=5.0))

    assert complete(trial, "wrong") is None
    assert storage.write(study_id, lambda tx: tx.start(queued, "w2", "other", 1.0)) is None
    assert storage.get_trial(study_id, trial.id) == before  # refusals change nothing
    done = complete(trial, "right")
    assert done is not None  # the new record, as stored
    assert done == storage.get_trial(study_id, trial.id)
    assert (done.state, done.fitness, done.finished_at) == (TrialState.COMPLETE, 1.0, 5.0)
    assert str(done.checkpoint) == "/ckpt"
    # a finished trial cannot be changed by a late or duplicate writer
    assert complete(trial, "right") is None
    assert storage.write(study_id, lambda tx: tx.fail(trial, "right", error="late",
                                                      now=6.0)) is None
    assert storage.get_trial(study_id, trial.id) == done


def test_an_illegal_transition_is_refused_before_it_is_written(storage: Storage) -> None:
    study_id = make_study(storage, end_steps=[10])
    [queued] = storage.get_trials(study_id)
    with pytest.raises(AssertionError, match="illegal transition QUEUED -> COMPLETE"):
        storage.write(study_id, lambda tx: tx.complete(
            queued, "token", metrics={}, fitness=1.0, checkpoint=None, now=1.0))
    assert storage.get_trial(study_id, queued.id) == queued


@pytest.mark.usefixtures("moves")
def test_every_transition_in_the_table(storage: Storage) -> None:
    """Each named transition makes the move the table allows, and returns the record."""
    study_id = make_study(storage, end_steps=[10, 10, 10])
    write = functools.partial(storage.write, study_id)
    a = claim(storage, study_id, "a")
    assert a is not None
    storage.add_report(study_id, a.id, 3, {"loss": 2.0})
    back = write(lambda tx: tx.requeue(a, "a"))  # RUNNING -> QUEUED
    assert back is not None and back.state == TrialState.QUEUED and back.worker is None
    assert a.id not in held_claims(storage, study_id)
    assert storage.get_reports(study_id, a.id) == []  # it runs again from its start
    a = claim(storage, study_id, "a2")
    assert a is not None and a.id == back.id
    trained = write(lambda tx: tx.mark_trained(a, "a2", metrics={"loss": 1.0},
                                               checkpoint="/a"))  # RUNNING -> TRAINED
    assert trained is not None and trained.state == TrialState.TRAINED
    assert trained.metrics == {"loss": 1.0}
    evaluating = write(lambda tx: tx.claim_next_evaluation("e", "e1", 2.0))
    assert evaluating is not None and evaluating.trial.state == TrialState.EVALUATING
    assert evaluating.claim == "e1" and evaluating.heartbeat_at is not None
    again = write(lambda tx: tx.requeue(evaluating.trial, "e1"))  # EVALUATING -> TRAINED
    assert again is not None and again.state == TrialState.TRAINED
    assert str(again.checkpoint) == "/a"
    b = claim(storage, study_id, "b")
    assert b is not None
    at_once = write(lambda tx: tx.evaluate_at_once(b, "b", metrics={}, checkpoint="/b",
                                                   evaluator="b-eval", now=3.0))
    assert at_once is not None and at_once.trial.state == TrialState.EVALUATING
    assert at_once.claim == "b-eval"  # RUNNING -> EVALUATING under the evaluator's claim
    failed = write(lambda tx: tx.fail(at_once.trial, "b-eval", error="boom", now=4.0,
                                      revoke=True))
    assert failed is not None and failed.state == TrialState.FAILED
    assert failed.checkpoint is None and failed.error == "boom"
    assert failed.id not in held_claims(storage, study_id)
    for before, after in TRANSITIONS.items():
        for state in TrialState:
            assert before.can_become(state) == (state in after)


def test_a_rolled_back_transaction_leaves_nothing(storage: Storage) -> None:
    study_id = make_study(storage, end_steps=[10])

    def work(tx: Transaction) -> None:
        tx.add_trial(new_trials([20])[0], 1.0)
        tx.set_study_state(StudyState.COMPLETE)
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError):
        storage.write(study_id, work)
    assert len(storage.get_trials(study_id)) == 1
    assert storage.get_study_by_id(study_id).state == StudyState.RUNNING


# -- heartbeats and reports ----------------------------------------------------------------------


def beat_at(storage: Storage, study_id: int, trial_id: int, claim: str, at: float) -> bool:
    """A heartbeat stamped ``at`` (a virtual clock's time) rather than by the database."""
    storage.clock = VirtualClock(at)
    try:
        return storage.heartbeat(study_id, trial_id, claim)
    finally:
        storage.clock = SYSTEM_CLOCK


def test_heartbeat_only_for_the_holder(storage: Storage) -> None:
    study_id = make_study(storage, end_steps=[10, 10])
    trial = claim(storage, study_id, "mine")
    assert trial is not None
    assert beat_at(storage, study_id, trial.id, "mine", 5e9) is True
    assert held_claims(storage, study_id)[trial.id] == ("mine", 5e9)
    assert beat_at(storage, study_id, trial.id, "theirs", 6e9) is False
    assert held_claims(storage, study_id)[trial.id] == ("mine", 5e9)
    queued = storage.get_trials(study_id, [TrialState.QUEUED])[0]
    assert beat_at(storage, study_id, queued.id, "mine", 6e9) is False
    assert beat_at(storage, study_id, 987654, "mine", 6e9) is False
    assert finish(storage, trial, "mine", 0.5)
    assert beat_at(storage, study_id, trial.id, "mine", 7e9) is False  # finished: nobody holds it
    assert trial.id not in held_claims(storage, study_id)


def test_reports_round_trip_in_step_order(storage: Storage) -> None:
    study_id = make_study(storage, end_steps=[10, 10])
    first, second = storage.get_trials(study_id)
    storage.add_report(study_id, first.id, 5, {"acc": 0.5, "loss": 1 / 3})
    storage.add_report(study_id, first.id, 1, {"acc": 0.1})
    storage.add_report(study_id, second.id, 3, {"λ": 1e-300})
    storage.add_report(study_id, first.id, 5, {"acc": 0.55})
    assert storage.get_reports(study_id, first.id) == [
        (1, {"acc": 0.1}), (5, {"acc": 0.5, "loss": 1 / 3}), (5, {"acc": 0.55})]
    assert storage.get_reports(study_id, second.id) == [(3, {"λ": 1e-300})]
    assert storage.get_reports(study_id, 987654) == []


# -- reads -------------------------------------------------------------------------------------


def test_count_states_and_filtered_reads(storage: Storage) -> None:
    study_id = make_study(storage, end_steps=[10, 10, 10, 10, 10])
    none = {state: 0 for state in TrialState}
    assert storage.count_states(study_id) == {**none, TrialState.QUEUED: 5}
    a = claim(storage, study_id, "a")
    b = claim(storage, study_id, "b")
    c = claim(storage, study_id, "c")
    d = claim(storage, study_id, "d")
    assert a and b and c and d
    assert finish(storage, a, "a", 1.0)
    assert fail(storage, b, "b", "boom")
    assert storage.write(study_id, lambda tx: tx.fail(
        d, "d", error="lost: the run was interrupted", now=2e9, revoke=True,
        state=TrialState.LOST)) is not None
    assert storage.count_states(study_id) == {
        **none, TrialState.QUEUED: 1, TrialState.RUNNING: 1, TrialState.COMPLETE: 1,
        TrialState.FAILED: 1, TrialState.LOST: 1}
    assert [t.id for t in storage.get_trials(study_id, [TrialState.FAILED])] == [b.id]
    assert [t.id for t in storage.get_trials(study_id, [TrialState.LOST])] == [d.id]
    assert storage.get_trial(study_id, b.id).error == "boom"
    assert {t.id for t in storage.get_trials(study_id, [TrialState.RUNNING,
                                                        TrialState.COMPLETE])} == {a.id, c.id}
    assert storage.count_states(make_study(storage, "other", end_steps=[10])) == {
        **none, TrialState.QUEUED: 1}
    assert storage.count_states(987654) == {state: 0 for state in TrialState}


def test_an_idle_look_says_what_waits_and_whether_anything_is_active(
        storage: Storage) -> None:
    study_id = make_study(storage, end_steps=[10, 10])
    queued, trained = (TrialState.QUEUED,), (TrialState.TRAINED,)
    assert storage.look(study_id, queued) == Look(StudyState.RUNNING, True, True)
    assert storage.look(study_id, trained) == Look(StudyState.RUNNING, False, True)
    a, b = claim(storage, study_id, "a"), claim(storage, study_id, "b")
    assert a and b
    # Both held: nothing to claim, and the study is not done.
    assert storage.look(study_id, queued) == Look(StudyState.RUNNING, False, True)
    assert finish(storage, a, "a", 1.0)
    assert storage.write(study_id, lambda tx: tx.mark_trained(
        b, "b", metrics={"acc": 0.5}, checkpoint=None)) is not None
    assert storage.look(study_id, (TrialState.TRAINED, TrialState.QUEUED)).claimable
    assert not storage.look(study_id, queued).claimable
    other = make_study(storage, "other", end_steps=[10])  # counts are per study
    assert storage.look(other, trained) == Look(StudyState.RUNNING, False, True)
    last = claim(storage, other, "c")
    assert last and finish(storage, last, "c", 1.0)
    assert storage.look(other, queued) == Look(StudyState.RUNNING, False, False)  # done
    storage.set_study_state(study_id, StudyState.COMPLETE)
    assert storage.look(study_id, queued).state == StudyState.COMPLETE


def test_best_trial_for_max_and_min(storage: Storage) -> None:
    study_id = make_study(storage, end_steps=[10, 10, 10, 10, 10])
    assert storage.best_trial(study_id, "max") is None
    fitnesses = [0.5, -2.0, 3.25, 3.25]
    done = []
    for i, fitness in enumerate(fitnesses):
        trial = claim(storage, study_id, f"t{i}")
        assert trial is not None
        assert finish(storage, trial, f"t{i}", fitness)
        done.append(trial)
    failed = claim(storage, study_id, "f")
    assert failed is not None
    assert fail(storage, failed, "f", "boom")
    best = storage.best_trial(study_id, "max")
    assert best is not None and best.id == done[2].id  # tie on fitness: the lower number
    worst = storage.best_trial(study_id, "min")
    assert worst is not None and worst.id == done[1].id


def test_best_trial_prefers_the_later_step_on_ties(storage: Storage) -> None:
    study_id = make_study(storage, end_steps=[10, 20])
    for token in ("a", "b"):
        trial = claim(storage, study_id, token)
        assert trial is not None and finish(storage, trial, token, 1.0)
    best = storage.best_trial(study_id, "max")
    assert best is not None and best.end_step == 20


def test_population_is_each_members_latest_complete_trial(storage: Storage) -> None:
    study_id = make_study(storage, end_steps=[10, 10, 10])
    trials = storage.get_trials(study_id)
    storage.write(study_id, lambda tx: tx.member_completed(2, trials[2].id))
    storage.write(study_id, lambda tx: tx.member_completed(0, trials[0].id))
    storage.write(study_id, lambda tx: tx.member_failed(0, 2, gave_up=False))
    storage.write(study_id, lambda tx: tx.member_done(0))
    assert [t.id for t in storage.get_population(study_id)] == [trials[0].id, trials[2].id]
    member = storage.get_members(study_id)[0]
    assert (member.failures, member.state) == (2, MemberState.DONE)


# -- JSON round trips ------------------------------------------------------------------------


JSON_VALUES: dict[str, Any] = {
    "third": 1 / 3,
    "tiny": 1e-300,
    "subnormal": 5e-324,
    "huge": 1.7976931348623157e308,
    "negative_zero": -0.0,
    "pi": 3.141592653589793,
    "big_int": 2**53 + 1,
    "very_big_int": 2**62,
    "minus": -7,
    "yes": True,
    "no": False,
    "one": 1,
    "one_float": 1.0,
    "none": None,
    "empty": "",
}


def test_params_round_trip_exactly(storage: Storage) -> None:
    params = dict(JSON_VALUES)
    for i, s in enumerate(TRICKY):
        params[s or "empty_name"] = s
        params[f"{s}#{i}"] = i
    study_id = make_study(storage, "json", initial=new_trials([10], params=params))
    loaded = storage.get_trials(study_id)[0].params
    assert loaded == params
    for name, value in params.items():
        assert type(loaded[name]) is type(value), name
    assert str(loaded["negative_zero"]) == "-0.0"


def test_metrics_round_trip_exactly(storage: Storage) -> None:
    study_id = make_study(storage, end_steps=[10])
    trial = claim(storage, study_id, "tok")
    assert trial is not None
    metrics = {name or "empty": 1 / (i + 3) for i, name in enumerate(TRICKY)}
    metrics["tiny"] = 5e-324
    assert finish(storage, trial, "tok", 1 / 7, metrics)
    stored = storage.get_trial(study_id, trial.id)
    assert stored.metrics == metrics
    assert stored.fitness == 1 / 7


@pytest.mark.parametrize("name", [s for s in TRICKY if s])
def test_tricky_study_names_and_configs(storage: Storage, name: str) -> None:
    config = {"note": name, "nested": {"list": [1, 2.5, None, True, name]}}
    record = storage.create_study(name, config, "dir", new_trials([10]), 1.0)
    assert storage.get_study(name) == record
    assert record.config == config
    assert storage.get_study(name).config["nested"]["list"][3] is True


# -- bad URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://user@localhost/db", r"unsupported storage backend 'mysql'.*sqlite:///"),
        ("http://example.com/db", r"unsupported storage backend 'http'"),
        ("sqlite://", r"names no file; pass storage=None"),
        ("sqlite:///:memory:", r"names no file"),
        ("not a url at all", r"cannot parse storage URL 'not a url at all'"),
        ("pbtune.db", r"cannot parse storage URL"),
        ("", r"must be a non-empty string"),
        ("   ", r"must be a non-empty string"),
        (5, r"must be a non-empty string, got 5"),
        ("postgresql+psycopg2://u@localhost/db", r"uses the psycopg \(3\) driver"),
        ("sqlite:////nonexistent-pbtune-dir/a/b/s.db", r"cannot open storage"),
    ],
)
def test_bad_urls_raise_storage_error(url: Any, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        Storage(url)


def test_postgresql_on_a_closed_port_is_a_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Refused connections are retried with backoff; shorten the waits for the test.
    monkeypatch.setattr(storage_module, "RETRY_BASE_DELAY_S", 0.001)
    monkeypatch.setattr(storage_module, "RETRY_MAX_DELAY_S", 0.01)
    started = time.monotonic()
    with pytest.raises(StorageError) as raised:
        Storage("postgresql://postgres:hunter2@127.0.0.1:1/test")
    message = str(raised.value)
    assert "127.0.0.1:1" in message
    assert "kept failing after" in message or "cannot open storage" in message
    assert "hunter2" not in message  # the password is never shown
    assert time.monotonic() - started < 30


def test_repr(backend: Backend, storage: Storage) -> None:
    if backend.url is None:
        assert repr(storage) == "Storage('memory')"
    else:
        assert repr(storage).startswith(f"Storage('{backend.name}")


# -- what strategies with a history read ------------------------------------------------------
def test_recent_results_and_pending_trials(storage: Storage) -> None:
    """The newest COMPLETE trials oldest first, each with its parent's fitness, at most
    the limit; the unfinished ones with the fitness they start from; nothing of another
    study."""
    study_id = make_study(storage, end_steps=[10, 10, 10])
    make_study(storage, "other", end_steps=[10])
    first = [claim(storage, study_id, f"c{i}") for i in range(3)]
    for i, trial in enumerate(first):
        assert trial is not None and finish(storage, trial, f"c{i}", fitness=float(i))
    for parent in first:  # each member's next trial copies member 2's
        assert parent is not None
        storage.write(study_id, lambda tx, p=parent: tx.add_trial(NewTrial(
            member=p.member, generation=1, parent_id=first[2].id,  # type: ignore[union-attr]
            params={"lr": 0.5, "m": p.member}, start_step=10, end_step=20,
            decision="exploit"), 1.0))
    second = claim(storage, study_id, "d")
    assert second is not None and finish(storage, second, "d", fitness=7.0)

    recent = storage.write(study_id, lambda tx: tx.recent_complete(3))
    assert [(t.id, t.start_fitness, t.fitness) for t in recent] == [
        (first[1].id, None, 1.0), (first[2].id, None, 2.0),  # type: ignore[union-attr]
        (second.id, 2.0, 7.0)]
    assert (recent[2].member, recent[2].parent_id, recent[2].params, recent[2].start_step,
            recent[2].end_step) == (second.member, first[2].id, second.params, 10, 20)
    assert len(storage.write(study_id, lambda tx: tx.recent_complete(100))) == 4
    active = storage.write(study_id, lambda tx: tx.active_with_start())
    assert [(t.member, t.fitness, t.start_fitness) for t in active] == [
        (m, None, 2.0) for m in sorted({0, 1, 2} - {second.member})]


# -- a study's life: its settings, its budget, its deletion -----------------------------------
def rows_of(storage: Storage, study_id: int) -> dict[str, list[Any]]:
    """Every row the study owns, table by table."""
    from pbtune.storages._schema import members, reports, studies, trials

    def read(c: Connection) -> dict[str, list[Any]]:
        own = select(trials.c.id).where(trials.c.study_id == study_id)
        return {
            "studies": list(c.execute(select(studies).where(studies.c.id == study_id))),
            "members": list(c.execute(select(members).where(members.c.study_id == study_id))),
            "trials": list(c.execute(select(trials).where(trials.c.study_id == study_id))),
            "reports": list(c.execute(select(reports).where(reports.c.trial_id.in_(own)))),
        }

    return storage._read(read)


def test_delete_study_removes_its_rows_and_nothing_of_another(storage: Storage) -> None:
    doomed = make_study(storage, "doomed", end_steps=[10, 10])
    kept = make_study(storage, "kept", end_steps=[10, 10])
    for study_id in (doomed, kept):
        trial = claim(storage, study_id, f"c{study_id}")
        assert trial is not None
        storage.add_report(study_id, trial.id, 5, {"acc": 0.5})
        assert finish(storage, trial, f"c{study_id}", fitness=1.0)
    kept_rows = rows_of(storage, kept)
    assert all(kept_rows.values()) and all(rows_of(storage, doomed).values())

    assert storage.delete_study(doomed) == []
    assert rows_of(storage, doomed) == {"studies": [], "members": [], "trials": [],
                                        "reports": []}
    assert rows_of(storage, kept) == kept_rows
    assert [s.name for s in storage.list_studies()] == ["kept"]
    with pytest.raises(StudyNotFoundError, match="studies here: 'kept'"):
        storage.get_study("doomed")
    again = make_study(storage, "doomed", end_steps=[10])  # the name is free again
    assert len(storage.get_trials(again)) == 1


def test_delete_study_waits_for_trials_held_with_a_fresh_heartbeat(storage: Storage) -> None:
    study_id = make_study(storage, "busy", end_steps=[10, 10])
    held = claim_held(storage, study_id, "token", worker="host:1:w")
    assert held is not None and held.heartbeat_at is not None
    busy = storage.delete_study(study_id, unless_beat_within=60.0)
    assert [(h.trial.id, h.claim) for h in busy] == [(held.trial.id, "token")]
    assert busy[0].silence is not None and 0.0 <= busy[0].silence < 60.0
    assert len(storage.get_trials(study_id)) == 2  # nothing deleted
    # a heartbeat older than the limit (a worker killed outright) holds nothing up
    assert beat_at(storage, study_id, held.trial.id, "token", database_time(storage) - 61)
    assert storage.delete_study(study_id, unless_beat_within=60.0) == []
    assert storage.list_studies() == []


def test_study_settings_budget_and_furthest_step(storage: Storage) -> None:
    config = {"metric": "acc", "mode": "max", "max_steps": 30, "space": {"x": {"type": "int"}}}
    study_id = make_study(storage, "s", end_steps=[10, 4, 10], config=config)
    other = make_study(storage, "other", end_steps=[99],
                       config={**config, "max_steps": 99})
    assert storage.write(study_id, lambda tx: (tx.study_config(), tx.max_steps())) == (
        config, 30)
    storage.write(study_id, lambda tx: tx.set_study_config({**config, "max_steps": 2**31 - 1}))
    assert storage.write(study_id, lambda tx: tx.max_steps()) == 2**31 - 1
    assert storage.get_study("s").config == {**config, "max_steps": 2**31 - 1}
    assert storage.get_study("other").config["max_steps"] == 99
    assert storage.write(study_id, lambda tx: tx.furthest_step()) == 10
    trial = claim(storage, study_id, "c")  # the 0-4 one: the smallest end_step
    assert trial is not None and trial.end_step == 4
    assert fail(storage, trial, "c", "boom")
    assert storage.write(study_id, lambda tx: tx.furthest_step()) == 10  # FAILED count not
    assert storage.write(other, lambda tx: tx.furthest_step()) == 99


def test_lengthen_queued_trials_cut_short_and_resume_members(storage: Storage) -> None:
    stretches = [(8, 10), (0, 10), (6, 10), (2, 6), (8, 10), (9, 10)]
    initial = [NewTrial(member=m, generation=0, parent_id=None, params={"m": m},
                        start_step=start, end_step=end, decision="initial")
               for m, (start, end) in enumerate(stretches)]
    study_id = make_study(storage, "s", initial=initial)
    other = make_study(storage, "other", initial=initial[:1])
    running = claim(storage, study_id, "c")  # member 3's (2, 6): the smallest end_step
    assert running is not None and running.member == 3
    running = claim(storage, study_id, "d")  # then member 0's (8, 10), cut short but held
    assert running is not None and running.member == 0
    # The old budget 10, the new 13, 4 steps a trial: only queued trials that 10 cut short
    # grow, to 4 steps or to the new budget.
    count = storage.write(study_id, lambda tx: tx.lengthen_queued(10, 13, steps_per_trial=4))
    assert count == 2
    assert {t.member: (t.start_step, t.end_step) for t in storage.get_trials(study_id)} == {
        0: (8, 10), 1: (0, 10), 2: (6, 10), 3: (2, 6), 4: (8, 12), 5: (9, 13)}
    assert [t.end_step for t in storage.get_trials(other)] == [10]
    storage.write(study_id, lambda tx: tx.member_done(1))
    assert storage.get_members(study_id)[1].state == MemberState.DONE
    storage.write(study_id, lambda tx: tx.member_resumed(1))
    assert storage.get_members(study_id)[1].state == MemberState.ACTIVE


def test_a_decision_reads_the_stop_rules_with_the_study_and_a_stop_keeps_its_reason(
    storage: Storage,
) -> None:
    plain = make_study(storage, "plain")
    rules = [{"type": "target", "acc": 0.9}, {"type": "total_steps", "steps": 5}]
    ruled = make_study(storage, "ruled", config={"metric": "acc", "mode": "max",
                                                 "max_steps": 10, "stop": rules})
    assert storage.write(plain, lambda tx: tx.stop_rules()) == []
    assert storage.write(ruled, lambda tx: (tx.stop_rules(), tx.max_steps(),
                                            tx.stop_state())) == (rules, 10, {})

    def stop(tx: Transaction) -> tuple[StudyState, str | None]:
        tx.set_stop_state({"1": {"steps": 4}, "fired": 0})
        tx.stop_study("trial 3 reached acc 0.95")
        return tx.study_state(), tx.stop_reason()

    assert storage.write(ruled, stop) == (StudyState.COMPLETE, "trial 3 reached acc 0.95")
    record = storage.get_study("ruled")
    assert (record.state, record.stop_reason) == (StudyState.COMPLETE,
                                                  "trial 3 reached acc 0.95")
    assert storage.write(ruled, lambda tx: tx.stop_state()) == {"1": {"steps": 4}, "fired": 0}
    storage.set_study_state(ruled, StudyState.RUNNING)  # running again clears the reason
    assert storage.get_study("ruled").stop_reason is None
    assert storage.get_study("plain").stop_reason is None


def test_heartbeats_are_judged_by_the_database_clock_not_the_callers(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker whose clock runs 300 s ahead or behind stamps nothing with it: its claim
    # and its heartbeats are as fresh as anyone's, and a silence is measured by the
    # database, which stamped them.
    study_id = make_study(storage, end_steps=[10, 10])
    real_time = time.time
    for skew in (300.0, -300.0):
        monkeypatch.setattr(time, "time", lambda skew=skew: real_time() + skew)
        held = claim_held(storage, study_id, f"token{skew}")
        assert held is not None
        assert storage.heartbeat(study_id, held.trial.id, held.claim)
    monkeypatch.undo()
    assert storage.held_trials(study_id, silent_for=60.0) == []
    first, _ = storage.held_trials(study_id)
    assert beat_at(storage, study_id, first.trial.id, first.claim, database_time(storage) - 90)
    [stale] = storage.held_trials(study_id, silent_for=60.0)
    assert stale.trial.id == first.trial.id
    assert stale.silence is not None and 90.0 <= stale.silence < 150.0
