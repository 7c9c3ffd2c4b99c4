"""Databases written by earlier pbtune releases are moved to this schema when opened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text, update

import pbtune
from pbtune import FrozenTrial, Storage, TrialState
from pbtune.storages._schema import SCHEMA_VERSION, members, meta, trials
from reliability import workload


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of the test's own: a SQLite file, or a fresh PostgreSQL schema."""
    yield from workload.storage_urls(request.param, tmp_path)


def _train(trial: pbtune.Trial) -> dict[str, float]:
    (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
    return {"score": trial.params["x"] * trial.end_step}


def _as_row_keys(column: Any, study_column: Any) -> Any:
    """``column``, which holds a trial's number in ``study_column``'s study, as the row key
    of that trial (what releases before schema 3 stored)."""
    other = trials.alias()
    return select(other.c.id).where(
        other.c.study_id == study_column, other.c.number == column).scalar_subquery()


def _as_written_before_3(storage: Storage, version: str, study_id: int, lost: int,
                         failed: int) -> None:
    """Rewrite the database as releases before schema 3 did: trial references as row keys,
    and a lost trial (``lost`` of study ``study_id``) as FAILED with an error that says so,
    beside a trial whose code failed (``failed``)."""
    with storage._engine.begin() as connection:
        connection.execute(update(trials).where(trials.c.parent_id.is_not(None)).values(
            parent_id=_as_row_keys(trials.c.parent_id, trials.c.study_id)))
        connection.execute(
            update(members).where(members.c.latest_complete_id.is_not(None)).values(
                latest_complete_id=_as_row_keys(members.c.latest_complete_id,
                                                members.c.study_id)))
        for number, error in ((lost, "lost: the run was interrupted"), (failed, "ValueError")):
            connection.execute(update(trials).where(
                trials.c.study_id == study_id, trials.c.number == number,
            ).values(state="FAILED", error=error))
        connection.execute(update(meta).values(value=version))
    _as_written_before_4(storage, version)


_ADDED_IN_4 = {"pbtune_studies": ("stop_reason", "stop_state"), "pbtune_members": ("lagging",)}
_ADDED_IN_5 = {"pbtune_trials": ("checkpoint_gone", "not_before")}


def _as_written_before_4(storage: Storage, version: str) -> None:
    """Drop the columns schemas 4 and 5 added, and mark the database as of ``version``."""
    _as_written_before_5(storage, version)
    _drop(storage, _ADDED_IN_4)


def _as_written_before_5(storage: Storage, version: str) -> None:
    """Drop the columns schema 5 added, and mark the database as of ``version``."""
    _drop(storage, _ADDED_IN_5)
    with storage._engine.begin() as connection:
        connection.execute(update(meta).values(value=version))


def _drop(storage: Storage, added: dict[str, tuple[str, ...]]) -> None:
    with storage._engine.begin() as connection:
        for table, columns in added.items():
            for column in columns:
                connection.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))


def _finished_study(tmp_path: Path, url: str) -> list[FrozenTrial]:
    """A small finished study "old" in ``url``, its storage closed; its trials."""
    study = pbtune.create_study(
        "old", storage=url, space={"x": pbtune.Float(0.1, 1.0)}, metric="score",
        population_size=2, steps_per_trial=2, max_steps=4,
        checkpoint_root=tmp_path / "checkpoints")
    study.optimize(_train, workers=1, backend="thread", show_progress=False)
    trials = study.trials()
    study.storage.dispose()
    return trials


def test_a_schema_4_database_gains_the_columns_of_5(tmp_path: Path, url: str) -> None:
    trials_before = _finished_study(tmp_path, url)
    old = Storage(url)
    _as_written_before_5(old, "4")
    old.dispose()

    reopened = pbtune.load_study("old", storage=url)
    assert reopened.trials() == trials_before
    assert all(t.checkpoint_gone is None for t in reopened.trials())
    columns = reopened.storage._read(
        lambda c: {column["name"] for column in inspect(c).get_columns("pbtune_trials")})
    assert {"checkpoint_gone", "not_before"} <= columns
    assert reopened.storage._read(
        lambda c: c.execute(select(meta.c.value)).scalar_one()) == str(SCHEMA_VERSION)


def test_a_schema_3_database_gains_the_columns_of_4_and_runs_on(tmp_path: Path,
                                                                url: str) -> None:
    trials_before = _finished_study(tmp_path, url)
    old = Storage(url)
    _as_written_before_4(old, "3")
    old.dispose()

    storage = Storage(url)
    columns = storage._read(lambda c: {
        table: {column["name"] for column in inspect(c).get_columns(table)}
        for table in _ADDED_IN_4})
    for table, added in _ADDED_IN_4.items():
        assert set(added) <= columns[table]
    assert storage._read(lambda c: c.execute(select(meta.c.value)).scalar_one()) == str(
        SCHEMA_VERSION)
    reopened = pbtune.load_study("old", storage=storage)
    assert reopened.trials() == trials_before
    reopened.extend(max_steps=6)
    reopened.optimize(_train, workers=1, backend="thread", show_progress=False)
    assert reopened.state == pbtune.StudyState.COMPLETE
    assert max(t.end_step for t in reopened.trials()) == 6


@pytest.mark.parametrize("version", ["1", "2"])
def test_an_older_database_keeps_its_lineages_and_population(tmp_path: Path, url: str,
                                                            version: str) -> None:
    before = {}
    for name in ("first", "second"):  # two studies: row keys and numbers then differ
        study = pbtune.create_study(
            name, storage=url, space={"x": pbtune.Float(0.1, 1.0)}, metric="score",
            population_size=3, steps_per_trial=2, max_steps=6,
            checkpoint_root=tmp_path / "checkpoints")
        study.optimize(_train, workers=1, backend="thread", show_progress=False)
        before[name] = ([t.id for t in study.lineage()],
                        study.storage.get_population(study.id))
        study.storage.dispose()
    old = Storage(url)
    second = old.get_study("second").id
    # two trials of the second study on neither its best lineage nor its population
    spare = [t.id for t in old.get_trials(second) if t.id not in before["second"][0]
             and t.id not in {p.id for p in before["second"][1]}]
    lost, failed = spare[-1], spare[-2]
    _as_written_before_3(old, version, second, lost, failed)
    old.dispose()

    storage = Storage(url)
    assert storage._read(lambda c: c.execute(select(meta.c.value)).scalar_one()) == str(
        SCHEMA_VERSION)
    for name, (lineage, population) in before.items():
        study = pbtune.load_study(name, storage=storage)
        assert [t.id for t in study.lineage()] == lineage
        assert lineage[0] < 3 and lineage == sorted(set(lineage))
        assert storage.get_population(study.id) == population
    states = {t.id: t.state for t in pbtune.load_study("second", storage=storage).trials()}
    assert (states[lost], states[failed]) == (TrialState.LOST, TrialState.FAILED)
    storage.dispose()
    assert Storage(url).get_study("second").name == "second"  # opened again: unchanged
