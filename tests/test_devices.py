"""GPUs on one machine: ``devices=`` and ``gpus_per_worker=`` give each worker process its
own ``CUDA_VISIBLE_DEVICES``. No GPU is needed: the worker processes are real, and what
they see is the variable, which CUDA reads for them.

What a process saw is recorded by `devices_trainers` (at import and in every trial);
which process ran which trial is the schedule's business, so the tests assert per
process: one device set each, the sets the plan promises, a replacement's set."""

from __future__ import annotations

import collections
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import devices_trainers
import pbtune
from pbtune import ConfigError, TrialState
from pbtune.cli import cli
from pbtune.worker import _devices
from pbtune.worker._devices import detect_gpus, parse_nvidia_smi, plan_devices

HERE = Path(__file__).resolve().parent
TRAINERS = HERE / "devices_trainers.py"
RECORD = f"{TRAINERS}:record"
UNSET = "<unset>"

NVIDIA_SMI_L = """\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-6e6cb1e7-e44e-3c3d-635e-af4e9e3c9b88)
  MIG 3g.20gb     Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f)
  MIG 3g.20gb     Device  1: (UUID: MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb)
GPU 2: NVIDIA A100-SXM4-40GB (UUID: GPU-7f7dc2f8-f55f-4d4e-746f-b05fbf4dac99)
"""


@pytest.fixture(autouse=True)
def no_gpus_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CUDA_VISIBLE_DEVICES and no GPU in this process (the tests fake them), and a
    folder where the worker processes say what they saw."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(_devices, "NVIDIA_PROC", tmp_path / "no-proc")
    empty = tmp_path / "no-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    log = tmp_path / "seen"
    log.mkdir()
    monkeypatch.setenv("PBTUNE_TEST_DEVICES", str(log))
    return log


def make_study(tmp_path: Path, name: str = "gpus", **options: Any) -> pbtune.Study:
    settings: dict[str, Any] = dict(
        space={"x": pbtune.Float(0.0, 1.0)}, metric="score", population_size=2,
        steps_per_trial=1, max_steps=3, checkpoint_root=tmp_path / "ckpt", seed=3)
    return pbtune.create_study(name, storage=f"sqlite:///{tmp_path / 's.db'}",
                               **{**settings, **options})


def started(log: Path) -> dict[int, str]:
    """pid -> the CUDA_VISIBLE_DEVICES each worker process started with (this process,
    which may import the trainers to check them, is no worker)."""
    return {int(path.stem): path.read_text() for path in log.glob("*.start")
            if int(path.stem) != os.getpid()}


def seen(log: Path, kind: str = "train") -> dict[int, set[str]]:
    """pid -> what its trials of ``kind`` saw."""
    return {int(path.stem): set(path.read_text().split())
            for path in log.glob(f"*.{kind}")}


def assert_consistent(log: Path, study: pbtune.Study) -> dict[int, str]:
    """Every trial saw what its process started with, and the study is done; the
    processes' device sets."""
    start = started(log)
    for pid, values in {**seen(log), **seen(log, "evaluate")}.items():
        assert values == {start[pid]}, (pid, values, start)
    for trial in study.trials([TrialState.COMPLETE]):
        assert int((trial.worker or "").split(":")[1]) in start
    assert study.state == pbtune.StudyState.COMPLETE
    return start


def fake_nvidia_smi(folder: Path, output: str, code: int = 0) -> None:
    assert "'" not in output
    program = folder / "nvidia-smi"  # printf is the shell's own: PATH has nothing else
    program.write_text(f"#!/bin/sh\nprintf '%s' '{output}'\nexit {code}\n")
    program.chmod(0o755)


# -- real worker processes -----------------------------------------------------------------
def test_each_worker_sees_its_own_disjoint_group(tmp_path: Path, no_gpus_here: Path) -> None:
    study = make_study(tmp_path)
    # A function, not a path: each worker imports its module as it unpickles it, before
    # pbtune's code runs there, and the module's record shows the variable already set.
    study.optimize(devices_trainers.record, devices=[3, 5, 6, 7], gpus_per_worker=2,
                   show_progress=False)
    start = assert_consistent(no_gpus_here, study)
    # workers left out: one per group of two
    assert sorted(start.values()) == ["3,5", "6,7"]


def test_more_workers_than_gpus_share_them_round_robin(tmp_path: Path,
                                                       no_gpus_here: Path) -> None:
    study = make_study(tmp_path)
    study.optimize(RECORD, workers=3, devices="0,1", show_progress=False)
    start = assert_consistent(no_gpus_here, study)
    assert collections.Counter(start.values()) == {"0": 2, "1": 1}


def test_a_replaced_worker_gets_the_devices_of_the_one_it_replaces(
        tmp_path: Path, no_gpus_here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = "GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77", "MIG-c6d4f1ef-42e4-5de3-91c7"
    monkeypatch.setenv("PBTUNE_TEST_VICTIM", second)  # the second worker's process dies
    study = make_study(tmp_path)
    study.optimize(f"{TRAINERS}:dies_once", workers=2, devices=[first, second],
                   show_progress=False)
    start = assert_consistent(no_gpus_here, study)
    dead = int((no_gpus_here / "died").read_text())
    [lost] = study.trials([TrialState.LOST])
    assert lost.worker is not None and int(lost.worker.split(":")[1]) == dead
    # Two processes started with the dead one's devices: it and its replacement.
    assert start[dead] == second
    assert collections.Counter(start.values()) == {first: 1, second: 2}


def test_evaluators_take_the_groups_after_the_workers(tmp_path: Path,
                                                     no_gpus_here: Path) -> None:
    study = make_study(tmp_path, evaluate=f"{TRAINERS}:evaluate")
    study.optimize(RECORD, workers=1, evaluators=1, devices=[0, 1], show_progress=False)
    assert_consistent(no_gpus_here, study)
    assert set().union(*seen(no_gpus_here).values()) == {"0"}
    assert set().union(*seen(no_gpus_here, "evaluate").values()) == {"1"}


COMMAND = (
    "import json, os, sys\n"
    "seen = os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')\n"
    "with open(os.path.join(sys.argv[1], f'{os.getppid()}.command'), 'a') as log:\n"
    "    log.write(seen + '\\n')\n"
    "open(os.path.join(os.environ['PBTUNE_CHECKPOINT_DIR'], 'state'), 'w').write('1')\n"
    "json.dump({'score': float(os.environ['PBTUNE_END_STEP'])},"
    " open(os.environ['PBTUNE_METRICS_FILE'], 'w'))\n"
)


def test_command_trials_see_their_workers_devices(tmp_path: Path, no_gpus_here: Path) -> None:
    study = make_study(tmp_path)
    command = pbtune.Command([sys.executable, "-c", COMMAND, str(no_gpus_here)])
    study.optimize(command, devices=[2, 4], show_progress=False)
    assert study.state == pbtune.StudyState.COMPLETE
    by_worker = seen(no_gpus_here, "command")  # the command's parent is its worker
    assert all(len(values) == 1 for values in by_worker.values()), by_worker
    devices = [value for values in by_worker.values() for value in values]
    assert set(devices) <= {"2", "4"} and len(set(devices)) == len(devices)  # disjoint
    workers = {int((t.worker or "").split(":")[1]) for t in study.trials()}
    assert set(by_worker) == workers


def test_join_gives_each_process_its_devices(tmp_path: Path, no_gpus_here: Path) -> None:
    study = make_study(tmp_path)
    # One worker with devices is a process too: this one keeps its environment.
    assert study.join(RECORD, devices=["7"]) is None
    assert os.environ.get("CUDA_VISIBLE_DEVICES") is None
    assert list(assert_consistent(no_gpus_here, study).values()) == ["7"]


def test_auto_without_a_gpu_assigns_nothing_and_says_so(
        tmp_path: Path, no_gpus_here: Path, caplog: pytest.LogCaptureFixture) -> None:
    study = make_study(tmp_path)
    with caplog.at_level(logging.INFO, logger="pbtune"):
        study.optimize(RECORD, devices="auto", show_progress=False)
    assert "devices='auto': no GPU found" in caplog.text
    assert list(assert_consistent(no_gpus_here, study).values()) == [UNSET]


# -- "auto" ----------------------------------------------------------------------------------
def test_auto_counts_what_nvidia_smi_lists(tmp_path: Path, no_gpus_here: Path) -> None:
    fake_nvidia_smi(tmp_path / "no-bin", NVIDIA_SMI_L)
    assert detect_gpus() == (["0", "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f",
                              "MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb", "2"], "nvidia-smi -L")
    study = make_study(tmp_path)
    study.optimize(RECORD, workers=2, devices="auto", show_progress=False)
    start = assert_consistent(no_gpus_here, study)
    assert sorted(start.values()) == ["0", "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f"]


def test_a_mig_instance_is_a_group_of_its_own(tmp_path: Path) -> None:
    """CUDA shows a process one MIG instance only: a group that holds one and another
    device would give its worker one device, so it is refused."""
    fake_nvidia_smi(tmp_path / "no-bin", NVIDIA_SMI_L)
    with pytest.raises(ConfigError, match="CUDA shows a process only one MIG instance") as error:
        plan_devices("auto", 2, None)
    assert "group 0,MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f" in str(error.value)
    assert "pass gpus_per_worker=1" in str(error.value)
    migs = ["MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f", "MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb"]
    with pytest.raises(ConfigError, match="one MIG instance"):
        plan_devices(migs, 2, None)
    assert plan_devices(migs, 1, None).slots == ((migs[0],), (migs[1],))  # the advice
    assert plan_devices([0, 1, 2, 3], 2, None).slots == (("0", "1"), ("2", "3"))


def test_auto_takes_this_process_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "no-bin", NVIDIA_SMI_L)  # not asked: the scheduler's set wins
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert plan_devices("auto", None, None).slots == (("4",), ("6",))
    # Indices count the GPUs this process sees, as CUDA does: 1 is GPU 6 here.
    assert plan_devices([1, 0], None, None).slots == (("6",), ("4",))
    with pytest.raises(ConfigError, match="device 2 is not visible here"):
        plan_devices([2], None, None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert plan_devices("auto", None, 3) == _devices.DevicePlan(3)


def test_auto_falls_back_to_the_driver_folder(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "no-bin", "NVIDIA-SMI has failed\n", code=9)  # no driver
    for bus in ("0000:17:00.0", "0000:65:00.0", "0000:ca:00.0"):
        (tmp_path / "no-proc" / bus).mkdir(parents=True)
    ids, source = detect_gpus()
    assert ids == ["0", "1", "2"] and source.endswith("no-proc")
    # Five GPUs do not split in pairs: "auto" leaves the odd one out, and says so.
    (tmp_path / "no-proc" / "0000:ff:00.0").mkdir()
    plan = plan_devices("auto", 2, None)
    assert plan.workers == 2 and plan.slots == (("0", "1"), ("2", "3"))


def test_parse_nvidia_smi() -> None:
    assert parse_nvidia_smi("") == []
    assert parse_nvidia_smi(NVIDIA_SMI_L.split("\n")[0]) == ["0"]


# -- what is refused -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"devices": [0, 0]}, "devices lists 0 more than once"),
        ({"devices": "0,1,0"}, "devices lists 0 more than once"),
        ({"devices": [-1]}, "is negative: GPUs are numbered from 0"),
        ({"devices": ["cuda:0"]}, "neither a GPU index"),
        ({"devices": []}, "devices names no GPU"),
        ({"devices": 0}, "devices must be a list"),
        ({"devices": [True]}, "neither a GPU index"),
        ({"devices": [0], "gpus_per_worker": 2}, "gpus_per_worker=2 but devices=.0. names 1"),
        ({"devices": [0, 1, 2], "gpus_per_worker": 2}, "do not split into groups of"),
        ({"devices": [0, 1, 2, 3], "workers": 2}, "pass workers=4"),
        ({"devices": [0, 1], "gpus_per_worker": 0}, "gpus_per_worker must be an int >= 1"),
        ({"gpus_per_worker": 2}, "gpus_per_worker=2 needs devices="),
        ({"devices": [0], "backend": "ray"}, r"RayBackend\(resources_per_trial"),
        ({"devices": [0], "backend": "thread"}, "the thread backend runs every worker"),
        ({"devices": ["0", "MIG-c6d4f1ef-42e4"], "gpus_per_worker": 2}, "one MIG instance"),
    ],
)
def test_bad_devices_are_refused_before_anything_is_recorded(
        kwargs: dict[str, Any], message: str, tmp_path: Path) -> None:
    study = make_study(tmp_path)
    before = study.trials()
    with pytest.raises(ConfigError, match=message) as error:
        study.optimize(RECORD, stop=pbtune.TotalSteps(100), show_progress=False, **kwargs)
    assert "\n" not in str(error.value)
    again = pbtune.load_study("gpus", storage=study.storage.url)
    assert again.config.stop == () and again.trials() == before


def test_an_in_memory_study_cannot_give_threads_devices(
        tmp_path: Path, no_gpus_here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings: dict[str, Any] = dict(
        space={"x": pbtune.Float(0, 1)}, metric="score", population_size=2,
        steps_per_trial=1, max_steps=2, checkpoint_root=tmp_path / "ckpt")
    study = pbtune.create_study("m", storage=None, **settings)
    with pytest.raises(ConfigError, match=r"storage='sqlite:///pbtune\.db'"):
        study.optimize(RECORD, devices=[0])
    with pytest.raises(ConfigError, match=r"join\(devices=\) starts worker processes") as error:
        study.join(RECORD, devices="auto")
    # optimize(devices=) refuses an in-memory study too: the advice is the storage.
    assert "create the study with storage='sqlite:///pbtune.db'" in str(error.value)
    assert "optimize" not in str(error.value)
    with pytest.raises(ConfigError, match=r"as threads: optimize\(train, workers=N\)"):
        study.join(RECORD, workers=2)
    monkeypatch.chdir(tmp_path)  # the advice, followed
    again = pbtune.create_study("m", storage="sqlite:///pbtune.db", **settings)
    assert again.join(RECORD, devices=["7"]) is None
    assert list(assert_consistent(no_gpus_here, again).values()) == ["7"]


def test_the_thread_backend_of_a_database_study_is_told_to_use_processes(
        tmp_path: Path, no_gpus_here: Path) -> None:
    study = make_study(tmp_path)
    with pytest.raises(ConfigError, match="the thread backend runs every worker") as error:
        study.optimize(RECORD, devices=[0], backend="thread", show_progress=False)
    assert "leave backend out" in str(error.value)
    assert "or pass backend='process'" in str(error.value)
    assert "storage=" not in str(error.value)  # it has a database already
    study.optimize(RECORD, devices=[0], backend="process", show_progress=False)
    assert list(assert_consistent(no_gpus_here, study).values()) == ["0"]


# -- the command line ------------------------------------------------------------------------
STUDY_YAML = """\
name: cli-gpus
metric: score
population_size: 2
steps_per_trial: 1
max_steps: 2
space:
  x: {type: float, low: 0.0, high: 1.0}
checkpoint_root: ckpt
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="pbtune")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "study.yaml").write_text(STUDY_YAML)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_cli_run_devices(folder: Path, no_gpus_here: Path) -> None:
    result = invoke("run", RECORD, "--config", "study.yaml", "--devices", "4,6",
                    "--storage", "sqlite:///cli.db", "--no-progress")
    assert result.exit_code == 0, result.output
    study = pbtune.load_study("cli-gpus", storage="sqlite:///cli.db")
    assert sorted(assert_consistent(no_gpus_here, study).values()) == ["4", "6"]


def test_cli_worker_devices_auto(folder: Path, no_gpus_here: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke("create", "--config", "study.yaml", "--storage",
                  "sqlite:///cli.db").exit_code == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,2,3,5")
    result = invoke("worker", "--storage", "sqlite:///cli.db", "--study", "cli-gpus",
                    "--entry", RECORD, "--devices", "auto", "--gpus-per-worker", "2")
    assert result.exit_code == 0, result.output
    study = pbtune.load_study("cli-gpus", storage="sqlite:///cli.db")
    assert sorted(assert_consistent(no_gpus_here, study).values()) == ["1,2", "3,5"]


def test_cli_bad_devices_are_one_line(folder: Path) -> None:
    result = invoke("run", RECORD, "--config", "study.yaml", "--devices", "0,0",
                    "--storage", "sqlite:///cli.db", "--no-progress")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "devices lists 0 more than once" in lines[0], lines
    result = invoke("run", RECORD, "--config", "study.yaml", "--gpus-per-worker", "0")
    assert result.exit_code == 2 and "--gpus-per-worker" in result.output


def test_plans_are_described_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pbtune"):
        plan = plan_devices([0, 1], None, 2, evaluators=1)
    assert plan.slots == (("0",), ("1",), ("0",))
    assert caplog.messages == [
        "CUDA_VISIBLE_DEVICES: worker 0=0, worker 1=1, evaluator 0=0 "
        "(3 processes share 2 device group(s))"]
