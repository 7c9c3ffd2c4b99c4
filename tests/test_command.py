"""`pbtune.Command`: one trial as a subprocess, with the trial passed in files and variables
and the metrics read back; every way the program can fail fails the trial clearly."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pbtune
from pbtune import Command, TrialFailedError
from pbtune.trial import Trial
from pbtune.worker._command import param_variable
from pbtune.worker._process import pid_alive

PY = sys.executable


def make_trial(tmp_path: Path, parent: Path | None = None) -> Trial:
    checkpoint = tmp_path / "staging"
    checkpoint.mkdir(exist_ok=True)
    return Trial(
        id=7, member=1, generation=2,
        params={"lr": 0.001, "batch-size": 64, "optimizer": "adam", "nesterov": True},
        start_step=8, end_step=12, parent_checkpoint=parent, checkpoint_dir=checkpoint,
        study_name="demo", seed=5,
    )


def script(tmp_path: Path, body: str) -> list[str]:
    """A Python program run by the test's own interpreter, as the command."""
    path = tmp_path / "prog.py"
    path.write_text("import json, os, sys\n" + body)
    return [PY, str(path)]


WRITE_METRICS = "json.dump({'score': 1.5}, open(os.environ['PBTUNE_METRICS_FILE'], 'w'))\n"


def test_the_trial_reaches_the_command_in_a_file_and_in_variables(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    body = (
        "info = json.load(open(os.environ['PBTUNE_TRIAL_FILE']))\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('PBTUNE_')}\n"
        "json.dump({'info': info, 'env': env}, open(sys.argv[1], 'w'))\n" + WRITE_METRICS
    )
    out = tmp_path / "seen.json"
    trial = make_trial(tmp_path, parent)
    assert Command([*script(tmp_path, body), str(out)])(trial) == {"score": 1.5}
    seen = json.loads(out.read_text())
    info = seen["info"]
    env = {k: v for k, v in seen["env"].items() if k not in os.environ}  # e.g. CI's own
    metrics_file = info.pop("metrics_file")
    assert info == {
        "params": {"lr": 0.001, "batch-size": 64, "optimizer": "adam", "nesterov": True},
        "trial_id": 7, "number": 7, "member": 1, "generation": 2, "start_step": 8,
        "end_step": 12, "seed": 5, "study": "demo", "parent_checkpoint": str(parent),
        "checkpoint_dir": str(trial.checkpoint_dir),
    }
    assert json.loads(env.pop("PBTUNE_PARAMS")) == info["params"]
    assert Path(env.pop("PBTUNE_TRIAL_FILE")).name == "trial.json"
    assert env == {
        "PBTUNE_PARAM_LR": "0.001",
        "PBTUNE_PARAM_BATCH_SIZE": "64",
        "PBTUNE_PARAM_OPTIMIZER": "adam",
        "PBTUNE_PARAM_NESTEROV": "true",
        "PBTUNE_START_STEP": "8",
        "PBTUNE_END_STEP": "12",
        "PBTUNE_CHECKPOINT_DIR": str(trial.checkpoint_dir),
        "PBTUNE_PARENT_CHECKPOINT": str(parent),
        "PBTUNE_METRICS_FILE": metrics_file,
        "PBTUNE_TRIAL_ID": "7",
        "PBTUNE_MEMBER": "1",
        "PBTUNE_SEED": "5",
        "PBTUNE_STUDY": "demo",
    }
    assert not Path(metrics_file).exists()  # the scratch folder is gone after the trial


def test_a_first_trial_has_no_parent_checkpoint(tmp_path: Path) -> None:
    body = (
        "info = json.load(open(os.environ['PBTUNE_TRIAL_FILE']))\n"
        "assert info['parent_checkpoint'] is None, info\n"
        "assert os.environ['PBTUNE_PARENT_CHECKPOINT'] == ''\n" + WRITE_METRICS
    )
    assert Command(script(tmp_path, body))(make_trial(tmp_path)) == {"score": 1.5}


def test_user_env_and_cwd_reach_the_command(tmp_path: Path) -> None:
    body = (
        "assert os.environ['MY_FLAG'] == 'on'\n"
        f"assert os.getcwd() == {str(tmp_path)!r}, os.getcwd()\n" + WRITE_METRICS
    )
    command = Command(script(tmp_path, body), env={"MY_FLAG": "on"}, cwd=tmp_path)
    assert command(make_trial(tmp_path)) == {"score": 1.5}


def test_a_string_is_split_like_a_shell_and_runs_no_shell(tmp_path: Path) -> None:
    out = tmp_path / "args.json"
    body = "json.dump(sys.argv[1:], open(sys.argv[1], 'w'))\n" + WRITE_METRICS
    prog = script(tmp_path, body)[1]
    Command(f"{PY} {prog} {out} 'two words' '$HOME'")(make_trial(tmp_path))
    assert json.loads(out.read_text()) == [str(out), "two words", "$HOME"]
    assert Command(f"{PY} {prog} x").args == Command([PY, prog, "x"]).args


def test_the_checkpoint_written_by_the_command_stays(tmp_path: Path) -> None:
    body = "open(os.path.join(os.environ['PBTUNE_CHECKPOINT_DIR'], 'state'), 'w').write('42')\n"
    trial = make_trial(tmp_path)
    Command(script(tmp_path, body + WRITE_METRICS))(trial)
    assert (trial.checkpoint_dir / "state").read_text() == "42"


def test_a_non_zero_exit_fails_with_the_code_and_the_end_of_stderr(tmp_path: Path) -> None:
    body = "for i in range(100):\n    print(f'line {i}', file=sys.stderr)\nsys.exit(3)\n"
    with pytest.raises(TrialFailedError) as error:
        Command(script(tmp_path, body))(make_trial(tmp_path))
    text = str(error.value)
    assert "exited with code 3" in text
    assert "line 99" in text and "line 60" in text and "line 59\n" not in text


def test_output_larger_than_a_pipe_does_not_block_the_command(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    body = "sys.stdout.write('o' * 1_000_000)\nsys.stderr.write('e' * 1_000_000)\n" + WRITE_METRICS
    assert Command(script(tmp_path, body))(make_trial(tmp_path)) == {"score": 1.5}
    assert capfd.readouterr().err.count("o") >= 1_000_000  # both shown on the worker's stderr


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = (
        "import subprocess, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "print('waiting', file=sys.stderr, flush=True)\n"
        "time.sleep(600)\n"
    )
    with pytest.raises(TrialFailedError) as error:
        Command(script(tmp_path, body), timeout=5)(make_trial(tmp_path))
    assert "timed out after 5 s" in str(error.value)
    assert "waiting" in str(error.value)
    for pid in map(int, pids.read_text().split()):
        assert wait_gone(pid), f"process {pid} of the timed-out command is still running"


def wait_gone(pid: int) -> bool:
    """SIGKILL is delivered asynchronously: give the kernel a moment to end ``pid``."""
    for _ in range(200):
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_sigterm_before_the_command_started_still_kills_its_group(tmp_path: Path) -> None:
    # A run stops its workers with SIGTERM whenever it likes, also while a worker is
    # starting a command: what the command starts must not outlive the worker.
    pids = tmp_path / "pids"
    program = (
        "import os, signal, subprocess, sys, time\n"
        "from pbtune.worker._command import _kill_group_on_sigterm\n"
        "with _kill_group_on_sigterm() as group:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)  # before the command's pid is known\n"
        "    time.sleep(0.2)\n"
        "    child = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        f"    open({str(pids)!r}, 'w').write(str(child.pid))\n"
        "    group.started(child.pid)\n"
        "    time.sleep(600)\n"
    )
    done = subprocess.run([PY, "-c", program], timeout=60)
    assert done.returncode == -signal.SIGTERM  # the worker still ends as SIGTERM ends it
    assert wait_gone(int(pids.read_text())), "the command outlived the worker"


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        (None, "wrote no metrics"),
        ("{'score': 1}", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("0.5", "must be a JSON object"),
    ],
)
def test_metrics_that_are_missing_or_not_an_object_fail_the_trial(
    tmp_path: Path, metrics: str | None, message: str
) -> None:
    body = "print('about to finish', file=sys.stderr)\n"
    if metrics is not None:
        body += f"open(os.environ['PBTUNE_METRICS_FILE'], 'w').write({metrics!r})\n"
    with pytest.raises(TrialFailedError, match=message) as error:
        Command(script(tmp_path, body))(make_trial(tmp_path))
    assert "about to finish" in str(error.value)


def test_a_command_killed_by_a_signal_says_which(tmp_path: Path) -> None:
    body = "import signal\nos.kill(os.getpid(), signal.SIGTERM)\n"
    with pytest.raises(TrialFailedError, match="killed by signal SIGTERM"):
        Command(script(tmp_path, body))(make_trial(tmp_path))


def test_a_command_that_cannot_start_fails_clearly(tmp_path: Path) -> None:
    missing = "cannot be started: No such file or directory: 'no-such-program-pbtune'"
    with pytest.raises(TrialFailedError, match=missing):
        Command("no-such-program-pbtune --x")(make_trial(tmp_path))
    not_executable = tmp_path / "plain.txt"
    not_executable.write_text("hello")
    with pytest.raises(TrialFailedError, match="cannot be started: Permission denied"):
        Command([str(not_executable)])(make_trial(tmp_path))


@pytest.mark.parametrize("args", ["", "   ", [], [1, 2]])
def test_an_empty_or_non_string_command_is_a_config_error(args: object) -> None:
    with pytest.raises(pbtune.ConfigError, match="non-empty string or list"):
        Command(args)  # type: ignore[arg-type]


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(pbtune.ConfigError, match="timeout"):
        Command("true", timeout=0)


def test_a_command_pickles_for_worker_processes(tmp_path: Path) -> None:
    command = Command("prog --flag 'a b'", env={"A": "1"}, cwd=tmp_path, timeout=5)
    copy = pickle.loads(pickle.dumps(command))
    assert (copy.args, copy.env, copy.cwd, copy.timeout) == (
        ("prog", "--flag", "a b"), {"A": "1"}, str(tmp_path), 5.0)
    assert repr(copy) == "Command(\"prog --flag 'a b'\")"


def test_param_variable_names() -> None:
    assert param_variable("lr") == "PBTUNE_PARAM_LR"
    assert param_variable("batch-size") == "PBTUNE_PARAM_BATCH_SIZE"
    assert param_variable("layer.0/dropout") == "PBTUNE_PARAM_LAYER_0_DROPOUT"


def test_a_study_in_memory_runs_command_trials(tmp_path: Path) -> None:
    body = (
        "info = json.load(open(os.environ['PBTUNE_TRIAL_FILE']))\n"
        "open(os.path.join(info['checkpoint_dir'], 'state'), 'w').write('1')\n"
        "json.dump({'score': info['end_step'] * float(os.environ['PBTUNE_PARAM_LR'])},\n"
        "          open(os.environ['PBTUNE_METRICS_FILE'], 'w'))\n"
    )
    study = pbtune.create_study(
        "cmd", space={"lr": pbtune.Float(0.1, 1.0)}, storage=None, metric="score",
        population_size=2,
        steps_per_trial=1, max_steps=3, checkpoint_root=tmp_path / "ckpt",
    )
    study.optimize(Command(script(tmp_path, body)), workers=2, show_progress=False)
    trials = study.trials()
    assert trials and all(t.state == pbtune.TrialState.COMPLETE for t in trials)
    # How many trials a member needs depends on whom it copied, and when: a member that
    # copies one further ahead skips steps. Each trial ran the command (its score is
    # end_step * lr) from where its parent ended, and every member reached max_steps.
    by_id = {t.id: t for t in trials}
    for t in trials:
        parent = by_id[t.parent_id] if t.parent_id is not None else None
        assert t.start_step == (parent.end_step if parent is not None else 0)
        assert t.end_step == t.start_step + 1
        assert t.metrics is not None
        assert t.metrics["score"] == pytest.approx(t.end_step * t.params["lr"])
    for member in range(2):
        own = [t for t in trials if t.member == member]
        assert [t.end_step == 3 for t in own] == [False] * (len(own) - 1) + [True]
    # A member's first trial, then one more after each trial short of max_steps.
    assert len(trials) == 2 + sum(t.end_step < 3 for t in trials)


def test_every_first_trial_unable_to_start_fails_the_study(tmp_path: Path) -> None:
    study = pbtune.create_study(
        "cmd-missing", space={"lr": pbtune.Float(0.1, 1.0)}, storage=None, metric="score",
        population_size=2, steps_per_trial=1, max_steps=3, checkpoint_root=tmp_path / "ckpt",
    )
    with pytest.raises(pbtune.StudyFailedError, match="cannot be started"):
        study.optimize(Command("no-such-program-pbtune"), workers=1, show_progress=False)

