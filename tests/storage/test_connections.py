"""How pbtune uses PostgreSQL connections (`pbtune.storages._lender`): a worker process
holds at most one, and none while its trial trains; a server (or PgBouncer) with no
connection to spare is waited for, then named in one error that says what to do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

import pbtune
from conftest import drop_pbtune_tables, postgres_url
from pbtune import TrialState
from pbtune.storages import _storage as storage_module
from pbtune.storages._faults import explain
from pbtune.storages._transient import is_transient
from reliability.test_storage_outage import VirtualClock

TRAINERS = Path(__file__).resolve().parent / "connection_trainers.py"
WORKERS = 2
POPULATION = 4
MAX_STEPS = 2

FULL = "connection failed: connection to server failed: FATAL:  sorry, too many clients already"
ROLE_FULL = 'connection failed: FATAL:  too many connections for role "pbtune"'
POOLER_FULL = "connection failed: FATAL:  no more connections allowed (max_client_conn)"


def _run(tmp_path: Path, trainer: str, heartbeat_timeout: float) -> list[pbtune.FrozenTrial]:
    url = postgres_url()
    drop_pbtune_tables(url)
    study = pbtune.create_study(
        "connections", space={"x": pbtune.Float(0.0, 1.0)}, storage=url, metric="score",
        population_size=POPULATION, steps_per_trial=1, max_steps=MAX_STEPS,
        checkpoint_root=tmp_path / "ckpt", heartbeat_timeout=heartbeat_timeout,
    )
    study.optimize(f"{TRAINERS}:{trainer}", workers=WORKERS, show_progress=False)
    trials = study.trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * (POPULATION * MAX_STEPS)
    return trials


def test_a_worker_process_holds_at_most_one_connection(tmp_path: Path) -> None:
    # Heartbeats every 0.05 s beside the worker loop's back-to-back transactions: with a
    # pool, each thread kept a connection of its own open.
    trials = _run(tmp_path, "busy", heartbeat_timeout=0.3)
    held = [t.metrics["most_held"] for t in trials]
    assert max(held) <= 1, held


def test_a_worker_holds_no_connection_while_its_trial_trains(tmp_path: Path) -> None:
    trials = _run(tmp_path, "idle", heartbeat_timeout=60.0)  # a heartbeat every 10 s
    assert [t.metrics["closed"] for t in trials] == [1.0] * len(trials)


def _refusing(clock: VirtualClock, seconds: float, text: str) -> Callable[[], str]:
    """An operation that fails with ``text`` for ``seconds`` of ``clock``, then works."""
    until = clock.monotonic() + seconds

    def operation() -> str:
        if clock.monotonic() < until:
            raise OperationalError("SELECT 1", {}, Exception(text))
        return "connected"

    return operation


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    virtual = VirtualClock()
    monkeypatch.setattr(storage_module, "time", virtual)
    return virtual


def test_opening_waits_for_a_server_with_no_connection_to_spare(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """A refused connection is load, not a wrong URL: opening waits for a free one as
    long as a running study would (an unreachable server fails at once)."""
    storage = pbtune.Storage(f"sqlite:///{tmp_path / 'study.db'}")
    assert storage._retry(_refusing(clock, 30.0, FULL), opening=True) == "connected"
    assert len(clock.slept) > storage_module.OPEN_ATTEMPTS


@pytest.mark.parametrize("opening", [False, True])
@pytest.mark.parametrize("text", [FULL, ROLE_FULL])
def test_a_full_server_is_one_error_that_names_the_fixes(
    tmp_path: Path, clock: VirtualClock, opening: bool, text: str
) -> None:
    storage = pbtune.Storage(f"sqlite:///{tmp_path / 'study.db'}")
    with pytest.raises(pbtune.StorageError) as raised:
        storage._retry(_refusing(clock, 3600.0, text), opening=opening)
    message = str(raised.value)
    assert clock.now - 1000.0 >= storage_module.RETRY_FOR_S  # retried the whole period
    assert text.split("FATAL:  ")[1] in message
    for fix in ("fewer workers", "PgBouncer", "?pbtune_pooler=transaction",
                "max_connections", "CONNECTION LIMIT"):
        assert fix in message, message


def test_a_full_pgbouncer_names_its_setting(tmp_path: Path, clock: VirtualClock) -> None:
    storage = pbtune.Storage(f"sqlite:///{tmp_path / 'study.db'}")
    with pytest.raises(pbtune.StorageError, match=r"raise max_client_conn in its pgbouncer\.ini"):
        storage._retry(_refusing(clock, 3600.0, POOLER_FULL))


def test_a_pooler_that_refuses_startup_options_is_not_retried() -> None:
    """PgBouncer refuses the options pbtune sends a server: no retry can help, and the
    error says which option to add to the URL."""
    refused = OperationalError("SELECT 1", {}, Exception(
        'connection failed: connection to server at "127.0.0.1", port 6432 failed: '
        "FATAL:  unsupported startup parameter: options"))
    assert not is_transient(refused)
    message = explain(refused, "Storage('postgresql+psycopg://u@h:6432/db')", None,
                      opening=True)
    assert "add ?pbtune_pooler=transaction to the storage URL" in message
