"""Workers from anywhere: `pbtune create` + separate `pbtune worker` processes on
PostgreSQL, and the Ray backend (with a `pbtune worker` joining it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

import pbtune
from conftest import drop_pbtune_tables, postgres_url
from e2e.test_e2e import SPACE, TRAINERS, assert_accounted_for, assert_only_timeouts_failed
from pbtune import TrialState

JOIN_DATABASE = "pbtune_join_test"  # not the shared `test` database of the storage suite
SRC = Path(pbtune.__file__).resolve().parents[1]


@pytest.fixture
def pg_url() -> str:
    """A URL to this module's own PostgreSQL database, created if missing, emptied."""
    base = make_url(postgres_url())
    admin = sqlalchemy.create_engine(
        base.set(drivername="postgresql+psycopg", database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": JOIN_DATABASE},
            ).scalar()
            if not exists:
                connection.execute(sqlalchemy.text(f'CREATE DATABASE "{JOIN_DATABASE}"'))
    finally:
        admin.dispose()
    url = base.set(database=JOIN_DATABASE).render_as_string(hide_password=False)
    drop_pbtune_tables(url)
    return url


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def start_worker(url: str, study: str, tmp_path: Path, *args: str,
                 delay: str = "0.1") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pbtune", "worker", "--storage", url, "--study", study,
         "--entry", f"{TRAINERS}:quadratic", *args],
        cwd=tmp_path, env=cli_env(PBTUNE_TEST_DELAY=delay), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def finish(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    return output


def worker_pid(trial: pbtune.FrozenTrial) -> int | None:
    """The pid in a ``host:pid:tag`` worker id of this host."""
    parts = (trial.worker or "").split(":")
    if len(parts) == 3 and parts[0] == socket.gethostname() and parts[1].isdigit():
        return int(parts[1])
    return None


# No copies: 6 members x 30 steps / 5 = 36 trials, in whatever order the workers run them.
STUDY_YAML = f"""\
name: joined
metric: q
mode: max
population_size: 6
steps_per_trial: 5
max_steps: 30
checkpoint_root: ckpt
exploit: {{type: "{TRAINERS}:KeepOwn"}}
space:
  h0: {{type: float, low: 0.0, high: 1.0}}
  h1: {{type: float, low: 0.0, high: 1.0}}
"""


def test_three_cli_workers_join_a_created_study(tmp_path: Path, pg_url: str) -> None:
    (tmp_path / "study.yaml").write_text(STUDY_YAML)
    created = subprocess.run(
        [sys.executable, "-m", "pbtune", "create", "--config", "study.yaml",
         "--storage", pg_url],
        cwd=tmp_path, env=cli_env(), text=True, capture_output=True, timeout=60,
    )
    assert created.returncode == 0, created.stderr
    assert "'joined'" in created.stdout and "postgresql" in created.stdout

    # 36 trials; at most 14 each, so each of the three runs at least 36 - 2 * 14 = 8,
    # however late it starts.
    workers = [start_worker(pg_url, "joined", tmp_path, "--max-trials", "14", delay="0.1")
               for _ in range(3)]
    outputs = [finish(w) for w in workers]

    study = pbtune.load_study("joined", storage=pg_url)
    assert_accounted_for(study)
    trials = study.trials()
    assert len(trials) == 36 and all(t.state == TrialState.COMPLETE for t in trials)
    # Each worker ran what it says it ran, and the three ran every trial.
    ran = {w.pid: sum(worker_pid(t) == w.pid for t in trials) for w in workers}
    for worker, output in zip(workers, outputs, strict=True):
        assert f"ran {ran[worker.pid]} trial(s)" in output, output
    assert sum(ran.values()) == 36
    assert all(8 <= count <= 14 for count in ran.values()), (ran, outputs)


def test_worker_stops_after_max_trials_and_create_is_idempotent(
    tmp_path: Path, pg_url: str
) -> None:
    (tmp_path / "study.yaml").write_text(STUDY_YAML)
    for _ in range(2):  # a second create finds the same study and leaves it be
        subprocess.run([sys.executable, "-m", "pbtune", "create", "--config", "study.yaml",
                        "--storage", pg_url], cwd=tmp_path, env=cli_env(), check=True,
                       capture_output=True, timeout=60)
    output = finish(start_worker(pg_url, "joined", tmp_path, "--max-trials", "2", delay="0"))
    assert "ran 2 trial(s)" in output
    study = pbtune.load_study("joined", storage=pg_url)
    assert len(study.trials([TrialState.COMPLETE])) == 2
    assert study.state == pbtune.StudyState.RUNNING


def test_worker_errors_are_one_line(tmp_path: Path, pg_url: str) -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "pbtune", "worker", "--storage", pg_url, "--study", "nope",
         "--entry", f"{TRAINERS}:quadratic"],
        cwd=tmp_path, env=cli_env(), text=True, capture_output=True, timeout=60,
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: ") and missing.stderr.count("\n") == 1


def test_an_evaluator_joins_from_the_command_line(tmp_path: Path) -> None:
    study = pbtune.create_study(
        "joined-evaluation", storage=f"sqlite:///{tmp_path / 'study.db'}", space=SPACE,
        metric="q", population_size=3, steps_per_trial=5, max_steps=15,
        checkpoint_root=tmp_path / "ckpt", evaluate=f"{TRAINERS}:evaluate_q",
    )
    url = f"sqlite:///{tmp_path / 'study.db'}"
    trainer = subprocess.Popen(
        [sys.executable, "-m", "pbtune", "worker", "--storage", url, "--study",
         "joined-evaluation", "--entry", f"{TRAINERS}:train_without_score", "--role", "train"],
        cwd=tmp_path, env=cli_env(), text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    evaluator = subprocess.Popen(
        [sys.executable, "-m", "pbtune", "worker", "--storage", url, "--study",
         "joined-evaluation", "--role", "evaluate"],
        cwd=tmp_path, env=cli_env(), text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    finish(trainer)
    finish(evaluator)
    complete = study.trials([TrialState.COMPLETE])
    assert study.state == pbtune.StudyState.COMPLETE and complete == study.trials()
    assert_accounted_for(study)
    # A member's first trial, then one more after each trial short of max_steps (how many
    # depends on which results the copies saw, so it is counted, not fixed).
    assert len(complete) == 3 + sum(t.end_step < 15 for t in complete)
    assert {worker_pid(t) for t in complete} == {evaluator.pid}
    assert all((t.metrics or {}).get("evaluated") == 1.0 for t in complete)


def test_an_evaluator_needs_an_evaluated_study(tmp_path: Path) -> None:
    pbtune.create_study("plain", storage=f"sqlite:///{tmp_path / 'study.db'}", space=SPACE,
                        metric="q", checkpoint_root=tmp_path / "ckpt")
    refused = subprocess.run(
        [sys.executable, "-m", "pbtune", "worker", "--storage",
         f"sqlite:///{tmp_path / 'study.db'}", "--study", "plain", "--role", "evaluate"],
        cwd=tmp_path, env=cli_env(), text=True, capture_output=True, timeout=60,
    )
    assert refused.returncode == 2 and "no evaluate function" in refused.stderr


# -- Ray ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="the Ray backend tests need ray (pip install ray)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_backend_with_a_joining_cli_worker(tmp_path: Path, pg_url: str,
                                                local_ray: Any) -> None:
    study = pbtune.create_study(
        "on-ray", storage=pg_url, space=SPACE, metric="q", population_size=4,
        steps_per_trial=5, max_steps=30, checkpoint_root=tmp_path / "ckpt",
    )
    # At most two trials: however slowly the Ray workers start, they run the rest.
    joining = start_worker(pg_url, "on-ray", tmp_path, "--max-trials", "2")
    backend = pbtune.RayBackend(runtime_env={"env_vars": {"PBTUNE_TEST_DELAY": "0.1"}})
    study.optimize(f"{TRAINERS}:quadratic", workers=2, backend=backend, show_progress=False)
    finish(joining)
    assert_accounted_for(study)
    assert not study.trials([TrialState.RUNNING, TrialState.QUEUED])
    ray_workers = {t.worker for t in study.trials() if (t.worker or "").startswith("ray:")}
    assert 1 <= len(ray_workers) <= 2
    others = {t.worker for t in study.trials()} - ray_workers
    assert {worker_pid(t) for t in study.trials() if t.worker in others} <= {joining.pid}


def test_a_dead_ray_worker_is_replaced_and_its_trial_retried(
    tmp_path: Path, local_ray: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = pbtune.create_study(
        "ray-dies", storage=f"sqlite:///{tmp_path / 'study.db'}", space=SPACE, metric="q",
        population_size=2, steps_per_trial=5, max_steps=15, checkpoint_root=tmp_path / "ckpt",
    )
    backend = pbtune.RayBackend(
        runtime_env={"env_vars": {"PBTUNE_TEST_MARKERS": str(tmp_path / "markers")}}
    )
    # One worker: only its replacement can finish the study.
    study.optimize(f"{TRAINERS}:dies_once", workers=1, backend=backend, show_progress=False)
    assert_accounted_for(study)
    lost = study.trials([TrialState.LOST])
    assert not study.trials([TrialState.FAILED])
    assert len(lost) == 1 and lost[0].member == 0 and lost[0].start_step == 0
    assert (lost[0].error or "").startswith("lost: Ray worker ray:")
    assert len({t.worker for t in study.trials()}) == 2


def test_interrupting_a_ray_run_stops_its_workers_and_requeues_their_trials(
    tmp_path: Path, local_ray: Any
) -> None:
    from pbtune.controller import Controller
    from pbtune.worker._process import Entry
    from pbtune.worker._ray import run_ray

    study = pbtune.create_study(
        "ray-stop", storage=f"sqlite:///{tmp_path / 'study.db'}", space=SPACE, metric="q",
        population_size=2, steps_per_trial=5, max_steps=15, checkpoint_root=tmp_path / "ckpt",
    )
    backend = pbtune.RayBackend(
        runtime_env={"env_vars": {"PBTUNE_TEST_MARKERS": str(tmp_path / "markers")}}
    )

    def ctrl_c_once_hung() -> None:  # the trial that hangs is running: stop the run
        if any(t.member == 0 and t.start_step == 0 for t in study.trials([TrialState.RUNNING])):
            raise KeyboardInterrupt

    controller = Controller(study.storage, study.storage.get_study("ray-stop"), study.config)
    with pytest.raises(KeyboardInterrupt):
        run_ray(study.storage, controller, Entry(f"{TRAINERS}:hangs_once"), 1, backend,
                tick=ctrl_c_once_hung)
    assert not study.trials([TrialState.RUNNING])
    assert not study.trials([TrialState.FAILED])  # the code did not fail
    lost = study.trials([TrialState.LOST])
    assert [t.error for t in lost] == ["lost: the run was interrupted"]
    assert study.state == pbtune.StudyState.RUNNING  # a later run continues it


def test_a_ray_worker_past_trial_timeout_is_killed_and_replaced(
    tmp_path: Path, local_ray: Any
) -> None:
    study = pbtune.create_study(
        "ray-hangs", storage=f"sqlite:///{tmp_path / 'study.db'}", space=SPACE, metric="q",
        population_size=2, steps_per_trial=5, max_steps=10, checkpoint_root=tmp_path / "ckpt",
        trial_timeout=2.0,
    )
    backend = pbtune.RayBackend(
        runtime_env={"env_vars": {"PBTUNE_TEST_MARKERS": str(tmp_path / "markers")}}
    )
    study.optimize(f"{TRAINERS}:hangs_once", workers=1, backend=backend, show_progress=False)
    assert_accounted_for(study)
    assert_only_timeouts_failed(study, 2.0)


def test_ray_backend_ships_a_function_object(tmp_path: Path, local_ray: Any) -> None:
    from e2e import trainers

    study = pbtune.create_study(
        "ray-fn", storage=f"sqlite:///{tmp_path / 'study.db'}", space=SPACE, metric="q",
        population_size=2, steps_per_trial=5, max_steps=10, checkpoint_root=tmp_path / "ckpt",
    )
    study.optimize(trainers.quadratic, workers=2, backend="ray", show_progress=False)
    assert_accounted_for(study)


def test_ray_evaluators_run_on_actors_of_their_own(tmp_path: Path, local_ray: Any) -> None:
    study = pbtune.create_study(
        "ray-evaluated", storage=f"sqlite:///{tmp_path / 'study.db'}", space=SPACE,
        metric="q", population_size=3, steps_per_trial=5, max_steps=15,
        checkpoint_root=tmp_path / "ckpt", evaluate=f"{TRAINERS}:evaluate_q",
    )
    backend = pbtune.RayBackend(resources_per_trial={"CPU": 0.5},
                                resources_per_evaluator={"CPU": 0.5})
    study.optimize(f"{TRAINERS}:train_without_score", workers=1, evaluators=1,
                   backend=backend, show_progress=False)
    complete = study.trials([TrialState.COMPLETE])
    assert study.state == pbtune.StudyState.COMPLETE and complete
    assert all((t.metrics or {}).get("evaluated") == 1.0 for t in complete)
    # every COMPLETE trial was last held by the one evaluator actor
    assert len({t.worker for t in complete}) == 1
    assert next(iter({t.worker for t in complete})).startswith("ray:")
