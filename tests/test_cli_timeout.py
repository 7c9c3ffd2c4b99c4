"""``pbtune run --timeout`` and ``pbtune worker --timeout``: the run stops at the deadline
with its summary (exit code 0), the running trials go back in the queue unchanged, the
same command continues the study, and a bad value is one line before anything is made."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import pbtune
from pbtune import StudyState, TrialState
from pbtune.cli import cli
from pbtune.worker import Deadline

WAIT_S = 300  # a generous bound for a busy machine; no test waits this long when it passes

TRAIN = f'''
import pathlib, time

MARKS = pathlib.Path(__file__).parent / "marks"


def hangs(trial):
    """Blocks until a file appears that no test makes: it is stopped at the deadline."""
    MARKS.mkdir(exist_ok=True)
    (MARKS / f"started-{{trial.id}}").touch()
    give_up = time.monotonic() + {WAIT_S}
    while not (MARKS / "release").exists() and time.monotonic() < give_up:
        time.sleep(0.05)
    (trial.checkpoint_dir / "state").write_text("slow")
    return {{"score": 0.0}}


def quick(trial):
    (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
    return {{"score": trial.params["lr"] * trial.end_step}}
'''

STUDY_YAML = """
name: tiny
metric: score
population_size: 3
steps_per_trial: 1
max_steps: 2
space:
  lr: {type: float, low: 0.001, high: 1.0, log: true}
checkpoint_root: ckpt
"""


def invoke(args: Sequence[str]) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="pbtune")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "study.yaml").write_text(STUDY_YAML)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def url_of(folder: Path) -> str:
    return f"sqlite:///{folder / 'cli.db'}"


def started(folder: Path) -> set[int]:
    return {int(p.name.removeprefix("started-"))
            for p in (folder / "marks").glob("started-*")}


def assert_resumable(study: pbtune.Study) -> None:
    """Stopped at the timeout: RUNNING, nothing held, nothing failed or lost."""
    assert study.state == StudyState.RUNNING
    assert not study.trials([TrialState.RUNNING])
    assert not study.trials([TrialState.FAILED]) and not study.trials([TrialState.LOST])
    assert all(m.failures == 0 for m in study.storage.get_members(study.id))


def test_run_stops_at_its_timeout_and_the_same_command_continues(folder: Path) -> None:
    args = ["run", "train.py:hangs", "--config", "study.yaml", "--workers", "2",
            "--storage", url_of(folder), "--no-progress"]
    done = subprocess.run([sys.executable, "-m", "pbtune", *args, "--timeout", "1"],
                          cwd=folder, capture_output=True, text=True, timeout=WAIT_S,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "study 'tiny' RUNNING" in done.stdout
    assert ("the run stopped at its timeout (1 s); the study is unfinished: run the same "
            "command again to continue it") in done.stdout
    [line] = [line for line in done.stderr.splitlines() if "timeout" in line]
    assert re.fullmatch(
        r"\[W [-\d]+ [:\d]+ pbtune\] timeout of 1 s passed: .*; run the same command \(or "
        r"call optimize\) again to continue study 'tiny'", line), line
    study = pbtune.load_study("tiny", storage=url_of(folder))
    assert_resumable(study)
    assert {t.id for t in study.trials([TrialState.QUEUED])} >= started(folder)
    args[1] = "train.py:quick"
    result = invoke(args)  # the same command, with a training that ends
    assert result.exit_code == 0, result.output
    assert "study 'tiny' COMPLETE" in result.stdout and "stopped at its" not in result.stdout


def test_worker_stops_at_its_timeout_and_requeues_its_trial(
        folder: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    passed = Deadline.passed  # it passes once a training has begun, however slow the machine
    monkeypatch.setattr(Deadline, "passed",
                        lambda self: bool(started(folder)) and passed(self))
    assert invoke(["create", "--config", "study.yaml", "--storage", url_of(folder)]
                  ).exit_code == 0
    with caplog.at_level(logging.INFO, logger="pbtune"):
        result = invoke(["worker", "--storage", url_of(folder), "--study", "tiny",
                         "--entry", "train.py:hangs", "--timeout", "0.5"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    [began] = started(folder)  # one worker: one trial
    [line] = [r for r in caplog.records if "timeout" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert re.fullmatch(
        r"timeout of 0\.5 s passed: 1 running trial\(s\) put back in the queue unchanged.*; "
        r"run the same command \(or call join\) again to continue study 'tiny'",
        line.getMessage()), line.getMessage()
    assert "ran 0 trial(s); study 'tiny' is RUNNING" in result.stderr
    study = pbtune.load_study("tiny", storage=url_of(folder))
    assert_resumable(study)
    assert study.trial(began).state == TrialState.QUEUED and len(study.trials()) == 3
    result = invoke(["worker", "--storage", url_of(folder), "--study", "tiny", "--entry",
                     "train.py:quick"])
    assert result.exit_code == 0, result.output
    assert study.state == StudyState.COMPLETE
    assert study.trial(began).state == TrialState.COMPLETE


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_bad_timeout_is_one_line_before_anything_is_made(folder: Path, value: str) -> None:
    db = folder / "cli.db"
    for args in (["run", "train.py:quick", "--config", "study.yaml"],
                 ["worker", "--study", "tiny", "--entry", "train.py:quick"]):
        result = invoke([*args, "--storage", url_of(folder), "--timeout", value])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("Error: Invalid value for '--timeout'"), result.stderr
        assert "Traceback" not in result.output
        if value != "soon":  # click says that one is not a number
            assert "positive, finite number of seconds, e.g. --timeout 3600" in lines[-1]
    assert not db.exists()
