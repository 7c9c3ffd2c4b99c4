"""Databases written by earlier pbtune releases are moved to this schema when opened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

import pbtune
from pbtune import Storage
from pbtune.storages._schema import SCHEMA_VERSION, members, meta, trials
from reliability import workload


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of the test's own: a SQLite file, or a fresh PostgreSQL schema."""
    yield from workload.storage_urls(request.param, tmp_path)


def _train(trial: pbtune.Trial) -> dict[str, float]:
    (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
    return {"score": trial.params["x"] * trial.end_step}


def _as_written_before_3(storage: Storage, version: str) -> None:
    """Rewrite trial references as releases before schema 3 stored them: row keys."""
    parent = trials.alias("parent")
    mine = trials.alias("mine")
    with storage._engine.begin() as connection:
        connection.execute(
            update(trials).where(trials.c.parent_id.is_not(None)).values(
                parent_id=select(parent.c.id).where(
                    parent.c.study_id == trials.c.study_id,
                    parent.c.number == trials.c.parent_id,
                ).scalar_subquery()))
        connection.execute(
            update(members).where(members.c.latest_complete_id.is_not(None)).values(
                latest_complete_id=select(mine.c.id).where(
                    mine.c.study_id == members.c.study_id,
                    mine.c.number == members.c.latest_complete_id,
                ).scalar_subquery()))
        connection.execute(update(meta).values(value=version))


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
    _as_written_before_3(old, version)
    old.dispose()

    storage = Storage(url)
    assert storage._read(lambda c: c.execute(select(meta.c.value)).scalar_one()) == str(
        SCHEMA_VERSION)
    for name, (lineage, population) in before.items():
        study = pbtune.load_study(name, storage=storage)
        assert [t.id for t in study.lineage()] == lineage
        assert lineage[0] < 3 and lineage == sorted(set(lineage))
        assert storage.get_population(study.id) == population
    storage.dispose()
    assert Storage(url).get_study("second").name == "second"  # opened again: unchanged
