"""A growing study's PostgreSQL tables are vacuumed and analyzed by its own writes (see
`pbtune.storages._planner`): a table the planner has never analyzed looks a few rows long,
and a decision's joins over a large population became nested loops; dead row versions
that no VACUUM removed made its index scans grow with the trials ever stored."""

from __future__ import annotations

import time

import pytest
import sqlalchemy

from conftest import drop_pbtune_tables, postgres_url
from pbtune import Float, Storage
from pbtune.checkpoints import study_dir_name
from pbtune.controller import StudyConfig, initial_trials
from pbtune.storages import Transaction
from pbtune.storages._engine import normalize_url
from pbtune.storages._planner import EVERY_TRIALS, FIRST_TRIALS, due


def test_a_study_is_tidied_as_its_trials_double_then_every_1024() -> None:
    sizes = [number + 1 for number in range(100_000) if due(number)]
    assert sizes[:5] == [FIRST_TRIALS * 2 ** k for k in range(5)]  # 64 ... 1,024
    assert sizes[4:] == list(range(EVERY_TRIALS, 100_001, EVERY_TRIALS))


def analyzed_by_pbtune(url: str) -> bool:
    """Whether pbtune_trials had a manual VACUUM and ANALYZE (autovacuum's are counted
    apart)."""
    engine = sqlalchemy.create_engine(normalize_url(url))
    try:
        with engine.connect() as connection:
            return connection.execute(sqlalchemy.text(
                "SELECT last_analyze IS NOT NULL AND last_vacuum IS NOT NULL "
                "FROM pg_stat_user_tables "
                "WHERE relname = 'pbtune_trials'")).scalar_one()
    finally:
        engine.dispose()


def config(population: int) -> StudyConfig:
    return StudyConfig(space={"lr": Float(1e-4, 1.0, log=True)}, metric="acc", mode="max",
                       population_size=population, steps_per_trial=1, max_steps=100)


@pytest.mark.parametrize("population", [FIRST_TRIALS, 4])
def test_a_postgresql_study_is_tidied_when_it_reaches_a_mark(population: int) -> None:
    url = postgres_url()
    drop_pbtune_tables(url)
    storage = Storage(url)
    try:
        study = config(population)
        record = storage.create_study("grows", study.to_dict(), study_dir_name("grows", "s"),
                                      initial_trials(study), time.time())
        # A first population of 64 is a mark: the study's creation tidies its tables.
        assert analyzed_by_pbtune(url) is (population >= FIRST_TRIALS)
        if population < FIRST_TRIALS:
            first = initial_trials(study)[0]
            for _ in range(FIRST_TRIALS - population - 1):
                storage.write(record.id, lambda tx: tx.add_trial(first, time.time()))
            assert not analyzed_by_pbtune(url)
            # The write that enqueues the 64th trial tidies them after its commit.
            storage.write(record.id, lambda tx: tx.add_trial(first, time.time()))
            assert analyzed_by_pbtune(url)
        # The connection VACUUM ran on (autocommit for the while) is transactional again:
        # a write that fails leaves nothing.
        before = len(storage.get_trials(record.id))

        def fails(tx: Transaction) -> None:
            tx.add_trial(initial_trials(study)[0], time.time())
            raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            storage.write(record.id, fails)
        assert len(storage.get_trials(record.id)) == before
    finally:
        storage.dispose()
