"""End-to-end: `pbtune run --command` with the shell-script example, real worker processes
and a SQLite file; and a command dies with the run that started it."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pbtune
from pbtune import TrialState
from pbtune.worker._process import pid_alive

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shell"
SRC = Path(pbtune.__file__).resolve().parents[1]


def pbtune_cli(*args: str, cwd: Path, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(SRC), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "pbtune", *args], cwd=cwd, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **kwargs)  # type: ignore[call-overload]


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def test_the_shell_example_runs_a_study_and_its_schedule_exports(tmp_path: Path) -> None:
    max_steps = 40
    config = tmp_path / "study.yaml"
    config.write_text((EXAMPLE / "study.yaml").read_text().replace(
        "max_steps: 100", f"max_steps: {max_steps}"))
    url = f"sqlite:///{tmp_path / 'shell.db'}"
    code, out, err = finish(pbtune_cli(
        "run", "--config", str(config), "--command", f"sh {EXAMPLE / 'train.sh'}",
        "--workers", "2", "--storage", url, "--no-progress", cwd=tmp_path))
    assert code == 0, err
    assert "study 'shell-toy' COMPLETE" in out

    study = pbtune.load_study("shell-toy", storage=url)
    trials = study.trials()
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.error for t in trials]
    by_id = {t.id: t for t in trials}
    for t in trials:  # every trial is accounted for: a lineage that starts where its parent ended
        parent = by_id.get(t.parent_id) if t.parent_id is not None else None
        assert t.start_step == (parent.end_step if parent is not None else 0)
    for member in range(study.config.population_size):
        latest = max((t for t in trials if t.member == member), key=lambda t: t.number)
        assert latest.end_step == max_steps
    best = study.best_trial
    assert best.metrics is not None and best.metrics["q"] > -0.42 + 0.5  # θ moved toward 0
    assert best.checkpoint is not None
    step, *theta = (best.checkpoint / "state").read_text().split()
    assert int(step) == best.end_step
    assert abs(1.2 - sum(float(x) ** 2 for x in theta) - best.metrics["q"]) < 1e-9

    schedule_file = tmp_path / "schedule.json"
    code, out, err = finish(pbtune_cli(
        "schedule", "--storage", url, "--study", "shell-toy", "-o", str(schedule_file),
        cwd=tmp_path))
    assert code == 0, err
    schedule = json.loads(schedule_file.read_text())
    assert schedule[0]["start_step"] == 0 and schedule[-1]["end_step"] == max_steps
    assert all(a["end_step"] == b["start_step"] for a, b in itertools.pairwise(schedule))
    assert schedule[-1]["trial_id"] == best.id
    code, out, err = finish(pbtune_cli("schedule", "--storage", url, cwd=tmp_path))
    assert code == 0, err
    assert json.loads(out) == schedule


def test_a_failing_command_fails_its_trials_with_the_end_of_its_stderr(tmp_path: Path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text((EXAMPLE / "study.yaml").read_text())
    command = "sh -c 'echo boom from the command >&2; exit 4'"
    code, _, err = finish(pbtune_cli(
        "run", "--config", str(config), "--command", command, "--workers", "2",
        "--storage", f"sqlite:///{tmp_path / 'fail.db'}", "--no-progress", cwd=tmp_path))
    assert code == 1
    assert "exited with code 4" in err and "boom from the command" in err
    study = pbtune.load_study("shell-toy", storage=f"sqlite:///{tmp_path / 'fail.db'}")
    failed = [t for t in study.trials() if t.state == TrialState.FAILED]
    assert failed and all("boom from the command" in (t.error or "") for t in failed)


def test_a_killed_run_takes_its_commands_with_it(tmp_path: Path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text((EXAMPLE / "study.yaml").read_text())
    pids = tmp_path / "pids"
    command = f"sh -c 'echo $$ >> {pids}; exec sleep 600'"
    run = pbtune_cli("run", "--config", str(config), "--command", command, "--workers", "2",
                     "--storage", f"sqlite:///{tmp_path / 'kill.db'}", "--no-progress",
                     cwd=tmp_path, start_new_session=True)
    try:
        started = wait_for_pids(pids, 2)
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the run and its workers; the commands are
        run.communicate()  # in sessions of their own
    for pid in started:
        assert wait_gone(pid), f"command {pid} outlived the run that started it"

def test_an_interrupted_run_kills_everything_its_commands_started(tmp_path: Path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text((EXAMPLE / "study.yaml").read_text())
    pids = tmp_path / "pids"
    command = f"sh -c 'sleep 600 & echo $! >> {pids}; wait'"  # a grandchild of the worker
    run = pbtune_cli("run", "--config", str(config), "--command", command, "--workers", "2",
                     "--storage", f"sqlite:///{tmp_path / 'int.db'}", "--no-progress",
                     cwd=tmp_path, start_new_session=True, preexec_fn=_ctrl_c_as_on_a_terminal)
    try:
        started = wait_for_pids(pids, 2)
        run.send_signal(signal.SIGINT)  # Ctrl-C: the run stops its workers with SIGTERM
        try:
            code = run.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            pytest.fail(f"the run did not stop within 120 s of Ctrl-C; its stderr:\n"
                        f"{run.communicate()[1][-4000:]}")
        assert code == 130
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
    for pid in started:
        assert wait_gone(pid), f"{pid}, started by a command, outlived the run"


def _ctrl_c_as_on_a_terminal() -> None:
    """A run started from a shell in the background (``pytest ... &``) inherits SIGINT
    ignored, and Python then keeps ignoring it: give the run the terminal's default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_pids(path: Path, count: int) -> list[int]:
    for _ in range(1200):  # the commands start once the workers have started
        if path.exists() and len(path.read_text().split()) >= count:
            break
        time.sleep(0.05)
    started = [int(pid) for pid in path.read_text().split()]
    assert len(started) >= count
    return started


def wait_gone(pid: int) -> bool:
    """SIGKILL is delivered asynchronously: give the kernel a moment to end ``pid``."""
    for _ in range(400):
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False
