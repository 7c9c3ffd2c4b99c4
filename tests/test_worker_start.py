"""How a run starts its worker processes (`pbtune.worker._start`): what a worker forked
from the forkserver must have all the same as a spawned one."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pbtune
from pbtune import TrialState
from pbtune.worker._start import worker_context

VARIABLE = "PBTUNE_TEST_SET_BY_THE_RUN"


def reads_the_variable(trial: pbtune.Trial) -> dict[str, float]:
    (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
    return {"m": 1.0 if os.environ.get(VARIABLE) == "now" else 0.0}


def run(tmp_path: Path, name: str) -> list[float]:
    study = pbtune.create_study(name, storage=f"sqlite:///{tmp_path / 'w.db'}",
                                space={"x": pbtune.Float(0, 1)}, metric="m",
                                population_size=2, steps_per_trial=1, max_steps=2,
                                checkpoint_root=tmp_path / "ckpt")
    study.optimize(reads_the_variable, workers=2, show_progress=False)
    trials = study.trials()
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.error for t in trials]
    study.storage.dispose()
    return [t.metrics["m"] for t in trials]


def test_workers_have_the_environment_of_the_run_as_it_is_when_they_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    assert set(run(tmp_path, "before")) == {0.0}  # the server, if new, starts without it
    monkeypatch.setenv(VARIABLE, "now")
    assert set(run(tmp_path, "after")) == {1.0}  # forked from that server all the same


def registers_an_exit_handler(trial: pbtune.Trial) -> dict[str, float]:
    (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
    marker = Path(os.environ[VARIABLE]) / f"{os.getpid()}-{trial.id}"
    atexit.register(marker.write_text, "exited")
    return {"m": 1.0}


def test_the_exit_handlers_of_the_training_code_run_when_a_worker_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A forked process ends in os._exit, which runs none: the worker runs them itself.
    (tmp_path / "exits").mkdir()
    monkeypatch.setenv(VARIABLE, str(tmp_path / "exits"))
    study = pbtune.create_study("exit", storage=f"sqlite:///{tmp_path / 'e.db'}",
                                space={"x": pbtune.Float(0, 1)}, metric="m",
                                population_size=2, steps_per_trial=1, max_steps=2,
                                checkpoint_root=tmp_path / "ckpt")
    study.optimize(registers_an_exit_handler, workers=2, show_progress=False)
    ran = {p.name.split("-")[1] for p in (tmp_path / "exits").iterdir()
           if p.read_text() == "exited"}
    assert ran == {str(t.id) for t in study.trials()}
    study.storage.dispose()


SCRIPT = """
import os, sys
import pbtune, pbtune.study

def train(trial):
    (trial.checkpoint_dir / "state").write_text("1")
    return {"m": 1.0}

if __name__ == "__main__":
    root = sys.argv[1]
    os.chdir(os.path.join(root, "elsewhere"))  # where the relative PYTHONPATH finds the decoy
    study = pbtune.create_study("path", storage=f"sqlite:///{root}/p.db", metric="m",
                                space={"x": pbtune.Float(0, 1)}, population_size=2,
                                steps_per_trial=1, max_steps=2, checkpoint_root=root)
    study.optimize(train, workers=2, show_progress=False)
    print(study.state.value)
"""


def test_workers_run_the_pbtune_of_the_run_after_it_changed_folder(tmp_path: Path) -> None:
    # A relative PYTHONPATH that names this checkout's src/ where the run started, and a
    # decoy pbtune where it runs the study: before Python 3.12.8 the forkserver imports
    # what it preloads with PYTHONPATH as it reads it there, unless it is given the
    # run's own path.
    decoy = tmp_path / "elsewhere" / "src" / "pbtune" / "worker"
    decoy.mkdir(parents=True)
    (decoy.parent / "__init__.py").write_text("")
    (decoy / "__init__.py").write_text("")
    (decoy / "_process.py").write_text(
        f"import os\ndef _worker_main(*args, **kwargs):\n"
        f"    open({str(tmp_path / 'decoy-ran')!r}, 'w').close()\n    os._exit(3)\n")
    (tmp_path / "script.py").write_text(SCRIPT)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": "src"}
    ran = subprocess.run([sys.executable, str(tmp_path / "script.py"), str(tmp_path)],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.split()[-1] == "COMPLETE"
    assert not (tmp_path / "decoy-ran").exists()


def test_workers_that_need_their_own_devices_are_spawned() -> None:
    # CUDA_VISIBLE_DEVICES must be set before a worker imports the user's script, which
    # a forked worker would have imported from its server's environment.
    assert worker_context([("0",), ("1",)]).get_start_method() == "spawn"
    assert worker_context(None).get_start_method() in ("forkserver", "spawn")
