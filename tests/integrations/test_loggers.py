"""`pbtune.loggers` end to end: a real study (threads, reports, an exploit, a failure) run
with the TensorBoard and MLflow loggers, read back with the libraries' own readers
(TensorBoard's `EventAccumulator`, MLflow's `MlflowClient`) and compared with the study's
own records; then a resumed study, and a study file run by the command line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from integrations.extras import require

require("tensorboard", "tensorboard")
require("mlflow", "mlflow")

from click.testing import CliRunner  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

import pbtune  # noqa: E402
from pbtune import ConfigError, FrozenTrial, TrialState  # noqa: E402
from pbtune.cli import cli  # noqa: E402
from pbtune.loggers import MLflow, TensorBoard  # noqa: E402

STUDY = "logged"
FAIL_ONCE = (1, 3)  # (member, start_step) whose first try raises
_failed: set[tuple[int, int]] = set()
_lock = threading.Lock()


def train(trial: pbtune.Trial) -> dict[str, float]:
    """w climbs towards 1 at the rate lr; a report at every step; one planted failure."""
    w = 0.0
    if trial.parent_checkpoint is not None:
        w = json.loads((trial.parent_checkpoint / "w.json").read_text())["w"]
    for step in range(trial.start_step, trial.end_step):
        w += trial.params["lr"] * (1.0 - w)
        trial.report(step + 1, loss=1.0 - w, half=w / 2)
    with _lock:
        if (trial.member, trial.start_step) == FAIL_ONCE and FAIL_ONCE not in _failed:
            _failed.add(FAIL_ONCE)
            raise RuntimeError("planted failure")
    (trial.checkpoint_dir / "w.json").write_text(json.dumps({"w": w}))
    return {"loss": 1.0 - w, "w": w}


@dataclass
class Ran:
    study: pbtune.Study
    folder: Path
    tb_trials: Path
    tb_members: Path
    mlflow_uri: str

    @property
    def tb_study(self) -> str:
        """The study's folder under a TensorBoard log_dir: its checkpoint folder's name."""
        name = Path(str(self.study.checkpoint_dir)).name
        assert name.startswith(f"{STUDY}-")
        return name

    def finished(self) -> list[FrozenTrial]:
        return [t for t in self.study.trials() if not t.state.is_active]

    def client(self) -> Any:
        return MlflowClient(self.mlflow_uri)

    def runs(self) -> dict[int, Any]:
        """The study's MLflow runs by trial; asserts no trial has two."""
        client = self.client()
        experiment = client.get_experiment_by_name(STUDY)
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        numbers = [int(r.data.tags["pbtune.trial"]) for r in runs]
        assert len(numbers) == len(set(numbers)), f"a trial logged twice: {sorted(numbers)}"
        return dict(zip(numbers, runs, strict=True))


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    folder = tmp_path_factory.mktemp("loggers")
    ran = Ran(_study(folder), folder, folder / "tb", folder / "tbm",
              f"sqlite:///{folder / 'mlflow.db'}")
    with TensorBoard(ran.tb_members, per="member") as members:
        ran.study.optimize(train, workers=2, show_progress=False, callbacks=[
            TensorBoard(ran.tb_trials), members, MLflow(ran.mlflow_uri)])
    trials = ran.study.trials()
    assert any(t.decision == "exploit" for t in trials), "the test needs an exploit"
    assert any(t.state == TrialState.FAILED for t in trials), "the test needs a failure"
    yield ran


def _study(folder: Path, name: str = STUDY, population: int = 4,
           max_steps: int = 12) -> pbtune.Study:
    return pbtune.create_study(
        name, storage=None, metric="loss", mode="min", population_size=population,
        steps_per_trial=3, max_steps=max_steps, seed=3, exploit=pbtune.Truncation(0.5),
        space={"lr": pbtune.Float(0.01, 0.5, log=True), "opt": pbtune.Choice(["sgd", "adam"])},
        checkpoint_root=folder / "ckpt")


def accumulator(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder))
    events.Reload()
    return events


def scalars(events: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in events.Scalars(tag)]


def texts(events: EventAccumulator, tag: str) -> list[tuple[int, str]]:
    return [(e.step, tensor_util.make_ndarray(e.tensor_proto).item().decode())
            for e in events.Tensors(tag)]


def curve(study: pbtune.Study, trial: FrozenTrial, metric: str) -> list[tuple[int, float]]:
    """What the study holds of ``metric`` for ``trial``: its reports before its last step,
    then its result at its last step."""
    points = [(step, values[metric]) for step, values in study.reports(trial.id)
              if metric in values and step != trial.end_step]
    return [*points, (trial.end_step, (trial.metrics or {})[metric])]


def approx(points: list[tuple[int, float]]) -> list[tuple[int, Any]]:
    """TensorBoard keeps scalars as float32."""
    return [(step, pytest.approx(value, rel=1e-6)) for step, value in points]


# -- TensorBoard ------------------------------------------------------------------------------
def test_tensorboard_has_a_run_per_finished_trial(ran: Ran) -> None:
    runs = sorted(p.name for p in (ran.tb_trials / ran.tb_study).iterdir())
    assert runs == [f"trial-{t.id:06d}" for t in sorted(ran.finished(), key=lambda t: t.id)]
    for trial in ran.finished():
        events = accumulator(ran.tb_trials / ran.tb_study / f"trial-{trial.id:06d}")
        ((step, text),) = texts(events, "pbtune/trial")
        assert step == trial.end_step and f"state: {trial.state.value}" in text
        assert f"member {trial.member}, generation {trial.generation}" in text
        if trial.parent_id is not None:
            assert f"trial {trial.parent_id}" in text
        info = plugin_data_pb2.HParamsPluginData.FromString(
            events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
        ).session_start_info
        assert info.hparams["lr"].number_value == trial.params["lr"]
        assert info.hparams["opt"].string_value == trial.params["opt"]
        assert info.hparams["pbtune/member"].number_value == trial.member
        reported = [(s, v["loss"]) for s, v in ran.study.reports(trial.id)]
        if trial.state != TrialState.COMPLETE:  # what it reported, and no result
            assert "w" not in events.Tags()["scalars"]
            assert scalars(events, "loss") == approx(reported)
            continue
        for metric in ("loss", "half"):
            expected = curve(ran.study, trial, metric) if metric == "loss" else [
                (s, v["half"]) for s, v in ran.study.reports(trial.id)]
            assert scalars(events, metric) == approx(expected)
        assert scalars(events, "w") == approx([(trial.end_step, trial.metrics["w"])])
        lr = trial.params["lr"]
        assert scalars(events, "params/lr") == approx([(trial.start_step, lr),
                                                       (trial.end_step, lr)])


def test_tensorboard_per_member_draws_one_curve_per_member(ran: Ran) -> None:
    finished = ran.finished()
    members = sorted({t.member for t in finished})
    assert sorted(p.name for p in (ran.tb_members / ran.tb_study).iterdir()) == [
        f"member-{m:03d}" for m in members]
    for member in members:
        mine = sorted((t for t in finished if t.member == member), key=lambda t: t.id)
        events = accumulator(ran.tb_members / ran.tb_study / f"member-{member:03d}")
        complete = [t for t in mine if t.state == TrialState.COMPLETE]
        assert scalars(events, "loss") == approx(
            [point for t in complete for point in curve(ran.study, t, "loss")])
        notes = texts(events, "pbtune/lineage")
        assert [step for step, _ in notes] == [t.start_step for t in mine]
        for trial, (_, note) in zip(mine, notes, strict=True):
            assert f"**trial {trial.id}**" in note
            if trial.decision == "exploit":
                parent = ran.study.trial(trial.parent_id)  # type: ignore[arg-type]
                assert f"exploit of trial {parent.id} (member {parent.member})" in note


# -- MLflow -----------------------------------------------------------------------------------
def test_mlflow_has_a_run_per_finished_trial_with_its_lineage(ran: Ran) -> None:
    runs = ran.runs()
    finished = {t.id: t for t in ran.finished()}
    assert sorted(runs) == sorted(finished)
    client = ran.client()
    status = {TrialState.COMPLETE: "FINISHED", TrialState.FAILED: "FAILED"}
    for number, run in runs.items():
        trial = finished[number]
        tags = run.data.tags
        assert run.info.run_name == f"trial-{number:06d}"
        assert run.info.status == status[trial.state]
        assert tags["pbtune.study"] == STUDY and tags["pbtune.state"] == trial.state.value
        assert (tags["pbtune.member"], tags["pbtune.generation"], tags["pbtune.decision"]) == (
            str(trial.member), str(trial.generation), trial.decision)
        assert run.data.params == {"lr": json.dumps(trial.params["lr"]),
                                   "opt": trial.params["opt"]}
        if trial.parent_id is None:
            assert "pbtune.parent_trial" not in tags and "pbtune.parent_run_id" not in tags
        else:
            assert tags["pbtune.parent_trial"] == str(trial.parent_id)
            assert tags["pbtune.parent_run_id"] == runs[trial.parent_id].info.run_id
            lineage = [t.id for t in ran.study.lineage(number)]
            assert lineage[-2] == trial.parent_id
        last_report = ran.study.reports(number)[-1][1]  # its reports, then its result
        assert run.data.metrics == {**last_report, **(trial.metrics or {})}
        if trial.state == TrialState.FAILED:
            assert "planted failure" in tags["pbtune.error"]
            continue
        history = client.get_metric_history(run.info.run_id, "loss")
        assert [(m.step, m.value) for m in history] == curve(ran.study, trial, "loss")


def test_mlflow_logs_a_trial_once(ran: Ran) -> None:
    """A logger made later on the same tracking store (a resumed study, another process
    after the first logged) finds the runs there and adds none; nor does the first, called
    again. (Two processes logging at the same moment are not coordinated: the guide says
    so.)"""
    before = ran.runs()
    again = MLflow(ran.mlflow_uri)
    trial = ran.finished()[-1]
    again(ran.study, trial)
    assert ran.runs().keys() == before.keys()


def test_a_resumed_study_logs_only_its_new_trials(ran: Ran) -> None:
    """Callbacks see the trials that finish while they run: after `extend`, the new
    trials are logged, the old ones are neither logged again nor lost."""
    old = {t.id for t in ran.finished()}
    old_runs = ran.runs()
    ran.study.extend(max_steps=15)
    first, second = MLflow(ran.mlflow_uri), MLflow(ran.mlflow_uri)
    ran.study.optimize(train, workers=2, show_progress=False,
                       callbacks=[TensorBoard(ran.tb_trials), first, second])
    new = {t.id for t in ran.finished()} - old
    assert new
    runs = ran.runs()  # no trial twice, though two loggers logged the same study
    assert sorted(runs) == sorted(old | new)
    assert all(runs[n].info.run_id == old_runs[n].info.run_id for n in old)
    for number in old:  # one event file each: not written again
        folder = ran.tb_trials / ran.tb_study / f"trial-{number:06d}"
        assert len(list(folder.iterdir())) == 1


def test_a_study_made_again_under_its_name_gets_runs_of_its_own(ran: Ran) -> None:
    """Its trials are numbered from 0 again: their runs go beside the old study's, which
    keep their curves alone."""
    again = _study(ran.folder, population=2, max_steps=3)
    again.optimize(train, show_progress=False,
                   callbacks=[MLflow(ran.mlflow_uri), TensorBoard(ran.tb_trials)])
    client = ran.client()
    experiment = client.get_experiment_by_name(STUDY).experiment_id
    folder = Path(str(again.checkpoint_dir)).name
    mine = client.search_runs([experiment], f"tags.`pbtune.study_dir` = '{folder}'")
    assert sorted(int(r.data.tags["pbtune.trial"]) for r in mine) == [
        t.id for t in again.trials()]
    assert folder != ran.tb_study and folder.startswith(f"{STUDY}-")
    assert sorted(p.name for p in ran.tb_trials.iterdir()) == sorted([ran.tb_study, folder])
    assert sorted(p.name for p in (ran.tb_trials / folder).iterdir()) == [
        f"trial-{t.id:06d}" for t in again.trials()]
    for run in (ran.tb_trials / ran.tb_study).iterdir():  # one event file each, as before
        assert len(list(run.iterdir())) == 1, run


def test_a_fitness_function_is_logged_as_the_metric_fitness(ran: Ran) -> None:
    study = pbtune.create_study(
        "fit", storage=None, fitness=lambda metrics: -metrics["loss"], population_size=2,
        steps_per_trial=3, max_steps=3, space={"lr": pbtune.Float(0.01, 0.5),
                                               "opt": pbtune.Choice(["sgd"])},
        checkpoint_root=ran.folder / "ckpt")
    logger = MLflow(ran.mlflow_uri, experiment="fitness")
    study.optimize(train, show_progress=False, callbacks=[logger])
    runs = logger.client.search_runs([logger.experiment_id("fitness")])
    fitness = {int(r.data.tags["pbtune.trial"]): r.data.metrics["fitness"] for r in runs}
    assert fitness == {t.id: t.fitness for t in study.trials()}


# -- errors -----------------------------------------------------------------------------------
def test_mlflow_file_store_refused_by_mlflow_is_a_config_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow 3 refuses its file store (./mlruns) unless MLFLOW_ALLOW_FILE_STORE=true;
    pbtune says so, and the advice works."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    try:
        MLflow("file:./mlruns")
    except ConfigError as error:  # recent MLflow 3 refuses it and says how to opt in
        assert "MLFLOW_ALLOW_FILE_STORE=true" in str(error)
        assert "pass MLflow(tracking_uri='sqlite:///mlflow.db')" in str(error)
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    logger = MLflow("file:./mlruns", experiment="files")
    study = _study(tmp_path, population=2, max_steps=3)
    study.optimize(train, show_progress=False, callbacks=[logger])
    experiment = logger.client.get_experiment_by_name("files").experiment_id
    assert len(logger.client.search_runs([experiment])) == len(study.trials())


def test_tensorboard_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="per= must be 'trial' or 'member'"):
        TensorBoard("runs", per="members")  # type: ignore[arg-type]


# -- the study file ---------------------------------------------------------------------------
TRAIN_FILE = textwrap.dedent('''
    import json

    def train(trial):
        w = 0.0
        if trial.parent_checkpoint is not None:
            w = json.loads((trial.parent_checkpoint / "w.json").read_text())["w"]
        for step in range(trial.start_step, trial.end_step):
            w += trial.params["lr"] * (1.0 - w)
            trial.report(step + 1, loss=1.0 - w)
        (trial.checkpoint_dir / "w.json").write_text(json.dumps({"w": w}))
        return {"loss": 1.0 - w}
''')

STUDY_FILE = textwrap.dedent('''
    name: from-yaml
    storage: sqlite:///pbtune.db
    metric: loss
    mode: min
    population_size: 2
    steps_per_trial: 2
    max_steps: 4
    space: {lr: {type: float, low: 0.01, high: 0.5, log: true}}
    checkpoint_root: ckpt
    loggers:
      - {type: tensorboard, log_dir: runs}
      - {type: mlflow, tracking_uri: "sqlite:///mlflow.db"}
''')


def test_the_study_file_loggers_log_pbtune_run_and_pbtune_worker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "study.yaml").write_text(STUDY_FILE)
    (tmp_path / "train.py").write_text(TRAIN_FILE)
    run = subprocess.run(
        [sys.executable, "-m", "pbtune", "run", "train.py:train", "--config",
         "conf/study.yaml", "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    study = pbtune.load_study("from-yaml", storage=f"sqlite:///{tmp_path / 'pbtune.db'}")
    ran = study.trials()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")  # relative to the cwd
    experiment = client.get_experiment_by_name("from-yaml").experiment_id

    def logged() -> list[int]:
        return sorted(int(r.data.tags["pbtune.trial"]) for r in client.search_runs([experiment]))

    assert logged() == [t.id for t in ran]
    # relative to the study file, in the study's folder (named as its checkpoint folder)
    runs = tmp_path / "conf" / "runs" / Path(str(study.checkpoint_dir)).name
    assert sorted(p.name for p in runs.iterdir()) == [f"trial-{t.id:06d}" for t in ran]

    # `pbtune worker --config` reads the storage, the name and the loggers from the file.
    study.extend(max_steps=6)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["worker", "--config", "conf/study.yaml", "--entry",
                                      "train.py:train"])
    assert result.exit_code == 0, result.output
    everything = study.trials()
    assert len(everything) > len(ran)
    assert logged() == [t.id for t in everything]
    assert sorted(p.name for p in runs.iterdir()) == [f"trial-{t.id:06d}" for t in everything]
