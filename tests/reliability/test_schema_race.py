"""Processes that create the same study in a new database at the same instant: every one
of them opens the storage and gets the one study, on PostgreSQL and SQLite alike.

Real processes race (threads of one process share too much to catch it): a team of them
waits at a barrier before each round, then all create the study in a database no one has
touched yet (a new PostgreSQL schema, a new SQLite file).
"""

from __future__ import annotations

import multiprocessing
import traceback
import uuid
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

import pbtune
from conftest import postgres_url

PROCESSES = 8
ROUNDS = 40
BARRIER_TIMEOUT_S = 60.0


def _create(url: str) -> None:
    study = pbtune.create_study(
        name="race", storage=url, metric="loss", mode="min",
        space={"lr": pbtune.Float(1e-3, 0.5, log=True)}, population_size=2,
        steps_per_trial=1, max_steps=2, checkpoint_root="unused", load_if_exists=True)
    assert study.name == "race"


def _racer(urls: list[str], barrier: Barrier, results: Any) -> None:
    """One process of the team: at each round, wait for the others, then create."""
    for round_number, url in enumerate(urls):
        barrier.wait(BARRIER_TIMEOUT_S)
        try:
            _create(url)
            results.put((round_number, None))
        except Exception:
            results.put((round_number, traceback.format_exc(limit=3)))


def _race(urls: list[str]) -> dict[int, list[str]]:
    """Race ``PROCESSES`` processes over each URL in turn; the failures of each round."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    team = [context.Process(target=_racer, args=(urls, barrier, results))
            for _ in range(PROCESSES)]
    for process in team:
        process.start()
    failures: dict[int, list[str]] = {}
    try:
        for _ in range(PROCESSES * len(urls)):
            round_number, error = results.get(timeout=BARRIER_TIMEOUT_S)
            if error is not None:
                failures.setdefault(round_number, []).append(error)
    finally:
        for process in team:
            process.join(timeout=BARRIER_TIMEOUT_S)
            if process.is_alive():
                process.kill()
    assert all(process.exitcode == 0 for process in team)
    return failures


@pytest.fixture
def fresh_postgres_schemas() -> Iterator[list[str]]:
    """``ROUNDS`` URLs, each of a new, empty PostgreSQL schema (dropped afterwards): the
    first look at a database no pbtune opened, as a new database is, without the right to
    create databases."""
    url = postgres_url()
    prefix = f"pbtune_race_{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}_{i}" for i in range(ROUNDS)]
    with psycopg.connect(url, autocommit=True) as connection:
        for name in names:
            connection.execute(f"CREATE SCHEMA {name}")
    separator = "&" if "?" in url else "?"
    # Every other round on a server whose transactions read at REPEATABLE READ by default:
    # a snapshot taken before another process committed the tables must not hide them.
    options = [f"-csearch_path={name}" + ("" if i % 2 else
                                          r" -cdefault_transaction_isolation=repeatable\ read")
               for i, name in enumerate(names)]
    try:
        yield [f"{url}{separator}options={quote(option)}" for option in options]
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            for name in names:
                connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def test_processes_creating_a_study_in_a_new_postgresql_database_all_succeed(
        fresh_postgres_schemas: list[str]) -> None:
    failures = _race(fresh_postgres_schemas)
    assert not failures, "\n".join(f"round {r}: {e[0]}" for r, e in failures.items())
    for url in fresh_postgres_schemas[:3]:  # one study in each, which every process got
        storage = pbtune.Storage(url)
        assert [s.name for s in storage.list_studies()] == ["race"]
        storage.dispose()


def test_processes_creating_a_study_in_a_new_sqlite_file_all_succeed(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / f'race-{i}.db'}" for i in range(ROUNDS // 8)]
    failures = _race(urls)
    assert not failures, "\n".join(f"round {r}: {e[0]}" for r, e in failures.items())
