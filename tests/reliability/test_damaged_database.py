"""A damaged or full SQLite file: every database error that retrying cannot cure reaches
users as one `StorageError` line that says what is wrong and what to do, from the API and
the CLI alike, and a study stopped by a full disk finishes once space is freed."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import event

import pbtune
from pbtune import StorageError, TrialState
from pbtune.cli import cli

NAME = "damaged"
POPULATION = 4
MAX_STEPS = 25


def train(trial: pbtune.Trial) -> dict[str, float]:
    (trial.checkpoint_dir / "w.txt").write_text(str(trial.params["lr"]))
    return {"loss": float(trial.params["lr"]) / (1 + trial.end_step)}


def _create(url: str | pbtune.Storage, root: Path, max_steps: int = MAX_STEPS) -> pbtune.Study:
    return pbtune.create_study(
        name=NAME, storage=url, metric="loss", mode="min",
        space={"lr": pbtune.Float(1e-3, 0.5, log=True)}, population_size=POPULATION,
        steps_per_trial=1, max_steps=max_steps, checkpoint_root=str(root),
        # The worker thread that a full disk stopped mid-trial lived in this process, so
        # its trial is found lost by its silence: soon.
        heartbeat_timeout=2.0, load_if_exists=True)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with a finished study of about a hundred trials (several pages of rows)."""
    folder = tmp_path_factory.mktemp("healthy")
    db = folder / "study.db"
    storage = pbtune.Storage(f"sqlite:///{db}")
    _create(storage, folder / "ckpt").optimize(train, workers=1, backend="thread",
                                               show_progress=False)
    storage.dispose()
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


@pytest.fixture
def db(healthy: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "study.db"
    shutil.copy(healthy, copy)
    return copy


def _page_size_and_root(db: Path, table: str) -> tuple[int, int]:
    with sqlite3.connect(db) as connection:
        size = connection.execute("PRAGMA page_size").fetchone()[0]
        root = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?",
                                  (table,)).fetchone()[0]
    return int(size), int(root)


def _overwrite(db: Path, offset: int, length: int) -> None:
    with open(db, "r+b") as file:
        file.seek(offset)
        file.write(bytes([0xA5]) * length)


def _damage(db: Path, where: str) -> None:
    """Overwrite part of the file with garbage, as a failing disk or a stray write would."""
    if where == "trial rows":  # the root page of the trials' table
        size, root = _page_size_and_root(db, "pbtune_trials")
        _overwrite(db, (root - 1) * size, size)
    elif where == "schema":  # the first page after its header: the list of tables
        size, _ = _page_size_and_root(db, "pbtune_trials")
        _overwrite(db, 100, size - 100)
    else:  # the header: the file is no database at all
        _overwrite(db, 0, 100)


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and "SELECT" not in text, text
    return text


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=True)


def assert_one_line_error(result: Result, *needles: str) -> str:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("where", ["trial rows", "schema", "header"])
def test_a_damaged_file_is_one_line_that_says_so_from_the_api(db: Path, where: str) -> None:
    _damage(db, where)
    url = f"sqlite:///{db}"
    with pytest.raises(StorageError) as raised:
        pbtune.load_study(NAME, storage=url).trials()
    line = _one_line(raised.value)
    assert "is damaged" in line and "Restore it from a backup copy" in line
    assert str(db) in line


def test_a_trial_on_damaged_rows_is_not_reported_missing(db: Path) -> None:
    _damage(db, "trial rows")
    study = pbtune.load_study(NAME, storage=f"sqlite:///{db}")
    with pytest.raises(StorageError) as raised:  # not "study has no trial 3"
        study.trial(3)
    assert "is damaged" in _one_line(raised.value)


@pytest.mark.parametrize("where", ["trial rows", "schema", "header"])
@pytest.mark.parametrize("command", ["status", "trials", "best", "schedule"])
def test_a_damaged_file_is_one_line_that_says_so_from_the_cli(db: Path, where: str,
                                                              command: str) -> None:
    _damage(db, where)
    result = invoke([command, "--storage", f"sqlite:///{db}"])
    assert_one_line_error(result, "is damaged", "Restore it from a backup copy")


@pytest.fixture
def full_disk(db: Path) -> Iterator[pbtune.Storage]:
    """A storage on ``db`` whose disk is full: SQLite may not grow the file (its
    ``max_page_count``), which fails writes as a full disk does."""
    storage = pbtune.Storage(f"sqlite:///{db}")
    storage._engine.dispose()

    @event.listens_for(storage._engine, "connect")
    def _no_room(dbapi_connection: Any, _record: Any) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    yield storage
    storage.dispose()


def test_a_full_disk_is_one_line_and_the_study_finishes_once_space_is_freed(
        db: Path, full_disk: pbtune.Storage) -> None:
    url = f"sqlite:///{db}"
    pbtune.load_study(NAME, storage=url).extend(max_steps=MAX_STEPS * 4)
    study = pbtune.load_study(NAME, storage=full_disk)
    assert len(study.trials()) >= POPULATION * MAX_STEPS  # reads still work
    with pytest.raises(StorageError) as raised:
        study.optimize(train, workers=1, backend="thread", show_progress=False)
    line = _one_line(raised.value)
    assert "database or disk is full" in line and "Free space on it and run again" in line
    full_disk.dispose()

    # Space is freed (the limit gone): the same study runs to its end.
    again = pbtune.load_study(NAME, storage=url)
    again.optimize(train, workers=1, backend="thread", show_progress=False)
    finished = [t for t in again.trials() if t.state == TrialState.COMPLETE]
    assert {t.end_step for t in finished if t.end_step == MAX_STEPS * 4} == {MAX_STEPS * 4}
    assert sum(t.end_step == MAX_STEPS * 4 for t in finished) == POPULATION


def test_creating_a_study_on_a_full_disk_is_one_line(full_disk: pbtune.Storage,
                                                     tmp_path: Path) -> None:
    with pytest.raises(StorageError) as raised:
        pbtune.create_study(
            name="another", storage=full_disk, metric="loss", mode="min",
            space={"lr": pbtune.Float(1e-3, 0.5, log=True)}, population_size=64,
            steps_per_trial=1, max_steps=2, checkpoint_root=str(tmp_path / "c"))
    assert "Free space on it and run again" in _one_line(raised.value)


def _broken(_url: str) -> pbtune.Storage:
    raise RuntimeError("something pbtune did not foresee")


def test_an_unexpected_error_in_the_cli_is_one_line_too(
        db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pbtune.cli._read.open_existing", _broken)
    monkeypatch.delenv("PBTUNE_DEBUG", raising=False)
    line = assert_one_line_error(invoke(["status", "--storage", f"sqlite:///{db}"]),
                                 "RuntimeError: something pbtune did not foresee",
                                 "PBTUNE_DEBUG=1 shows the traceback")
    assert "please report it" in line

    # As the line says, PBTUNE_DEBUG=1 shows where it came from.
    monkeypatch.setenv("PBTUNE_DEBUG", "1")
    result = invoke(["status", "--storage", f"sqlite:///{db}"])
    assert isinstance(result.exception, RuntimeError)
