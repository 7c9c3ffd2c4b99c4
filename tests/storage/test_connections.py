"""How pbtune uses PostgreSQL connections (`pbtune.storages._lender`): a worker process
holds at most one, and none while its trial trains."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.exc import OperationalError

import pbtune
from conftest import drop_pbtune_tables, postgres_url
from pbtune import TrialState
from pbtune.storages._faults import explain
from pbtune.storages._transient import is_transient

TRAINERS = Path(__file__).resolve().parent / "connection_trainers.py"
WORKERS = 2
POPULATION = 4
MAX_STEPS = 2


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
    assert max(held) == 1, held  # kept open while the worker is busy, never a second one


def test_a_worker_holds_no_connection_while_its_trial_trains(tmp_path: Path) -> None:
    trials = _run(tmp_path, "idle", heartbeat_timeout=60.0)  # a heartbeat every 10 s
    assert [t.metrics["closed"] for t in trials] == [1.0] * len(trials)


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
