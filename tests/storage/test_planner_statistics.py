"""PostgreSQL's planner statistics are refreshed as a study grows (see
`pbtune.storages._planner`): a table the planner has never analyzed looks a few rows long,
and a decision's joins over a large population became nested loops."""

from __future__ import annotations

import time

import pytest
import sqlalchemy

from conftest import drop_pbtune_tables, postgres_url
from pbtune import Float, Storage
from pbtune.checkpoints import study_dir_name
from pbtune.controller import StudyConfig, initial_trials
from pbtune.storages._engine import normalize_url
from pbtune.storages._planner import FIRST_REFRESH, grew_past


def test_a_study_is_due_each_time_its_trials_double() -> None:
    due = [number + 1 for number in range(100_000) if grew_past(number)]
    assert due == [FIRST_REFRESH * 2 ** k for k in range(11)]  # 64 ... 65,536


def analyzed_by_pbtune(url: str) -> bool:
    """Whether pbtune_trials had a manual ANALYZE (autovacuum's are counted apart)."""
    engine = sqlalchemy.create_engine(normalize_url(url))
    try:
        with engine.connect() as connection:
            return connection.execute(sqlalchemy.text(
                "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
                "WHERE relname = 'pbtune_trials'")).scalar_one()
    finally:
        engine.dispose()


def config(population: int) -> StudyConfig:
    return StudyConfig(space={"lr": Float(1e-4, 1.0, log=True)}, metric="acc", mode="max",
                       population_size=population, steps_per_trial=1, max_steps=100)


@pytest.mark.parametrize("population", [FIRST_REFRESH, 4])
def test_postgresql_statistics_follow_a_study_that_doubles(population: int) -> None:
    url = postgres_url()
    drop_pbtune_tables(url)
    storage = Storage(url)
    try:
        study = config(population)
        record = storage.create_study("grows", study.to_dict(), study_dir_name("grows", "s"),
                                      initial_trials(study), time.time())
        # A first population of 64 is a doubling: the study's creation refreshes them.
        assert analyzed_by_pbtune(url) is (population >= FIRST_REFRESH)
        if population < FIRST_REFRESH:
            first = initial_trials(study)[0]
            for _ in range(FIRST_REFRESH - population - 1):
                storage.write(record.id, lambda tx: tx.add_trial(first, time.time()))
            assert not analyzed_by_pbtune(url)
            # The decision that enqueues the 64th trial refreshes them after its commit.
            storage.write(record.id, lambda tx: tx.add_trial(first, time.time()))
            assert analyzed_by_pbtune(url)
    finally:
        storage.dispose()
