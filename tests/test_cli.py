"""The `pbtune` command line: one real `python -m pbtune run` of a tiny study, then every
read command on its database, `replay`, and the errors a user can make.

Errors must be one line on stderr, a non-zero exit code and never a traceback.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pbtune import PB2, Perturb, Resample, Tournament, Truncation
from pbtune.cli import cli
from pbtune.cli._config import ALLOWED_KEYS, load_config

TRAIN = '''
import json


def train(trial):
    """Deterministic: the score is the sum of lr over the steps trained."""
    score = 0.0
    if trial.parent_checkpoint is not None:
        score = json.loads((trial.parent_checkpoint / "state.json").read_text())["score"]
    if trial.study_name == "tiny" and trial.member == 0 and trial.start_step >= 2:
        raise ValueError("planted failure")
    for _ in range(trial.start_step, trial.end_step):
        score += trial.params["lr"] * (2 if trial.params["double"] == "yes" else 1)
    (trial.checkpoint_dir / "state.json").write_text(json.dumps({"score": score}))
    return {"score": score, "steps": float(trial.end_step)}
'''

STUDY_YAML = """
name: tiny
metric: score
mode: max
population_size: 2
steps_per_trial: 1
max_steps: 3
max_retries: 1
seed: 7
heartbeat_timeout: 30
space:
  lr: {type: float, low: 1e-3, high: 1.0, log: true}
  double: {type: choice, choices: ["no", "yes"]}
exploit: tournament
explore: {type: perturb, factors: [0.8, 1.25], resample_probability: 0.25}
checkpoint_root: ckpt
"""


@dataclass(frozen=True)
class Ran:
    """The tiny study that the module's one real run left behind."""

    folder: Path
    url: str
    run: subprocess.CompletedProcess[str]


def pbtune_process(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pbtune", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    folder = tmp_path_factory.mktemp("cli")
    (folder / "train.py").write_text(TRAIN)
    (folder / "study.yaml").write_text(STUDY_YAML)
    url = f"sqlite:///{folder / 'tiny.db'}"
    run = pbtune_process(
        ["run", "train.py:train", "--config", "study.yaml", "--workers", "2",
         "--storage", url, "--no-progress"],
        cwd=folder,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return Ran(folder, url, run)


def invoke(args: Sequence[str]) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="pbtune")


def ok(args: Sequence[str]) -> str:
    result = invoke(args)
    assert result.exit_code == 0, result.output
    return result.stdout


def read_json(ran: Ran, *args: str) -> Any:
    return json.loads(ok([*args, "--storage", ran.url]))


# -- the real run ------------------------------------------------------------------------------
def test_run_prints_summary_and_keeps_checkpoints_next_to_the_file(ran: Ran) -> None:
    assert "study 'tiny' COMPLETE" in ran.run.stdout
    assert "best at max_steps: score (max)" in ran.run.stdout
    assert "params: lr=" in ran.run.stdout and "checkpoint (the trained model): " in ran.run.stdout
    assert f"pbtune status --storage {ran.url} --study tiny" in ran.run.stdout
    assert "Traceback" not in ran.run.stdout + ran.run.stderr
    assert (ran.folder / "ckpt").is_dir()  # relative to the YAML file's folder


def test_run_again_continues_the_same_study(ran: Ran, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    before = read_json(ran, "trials", "--format", "json")
    monkeypatch.chdir(ran.folder)
    with caplog.at_level(logging.INFO, logger="pbtune"):
        out = ok(["run", "train.py:train", "--config", "study.yaml", "--storage", ran.url,
                  "--no-progress"])
    assert "study 'tiny' COMPLETE" in out and "best at max_steps" in out
    assert "study 'tiny' is COMPLETE: nothing left to run" in caplog.messages
    assert not any("finished" in m for m in caplog.messages)  # no trial ran
    assert read_json(ran, "trials", "--format", "json") == before


def test_status_shows_progress_counts_best_and_last_error_lines(ran: Ran) -> None:
    out = ok(["status", "--storage", ran.url])
    assert "study 'tiny'" in out and "COMPLETE" in out
    # member 0 gave up after failing from step 2 on: only steps that trained count
    assert "5/6 steps (83.3%)" in out
    assert "failed trials of 'tiny'" in out
    assert "ValueError: planted failure" in out
    assert "Traceback" not in out  # only the last line without --errors
    full = ok(["status", "--storage", ran.url, "--study", "tiny", "--errors"])
    assert "Traceback (most recent call last)" in full and 'raise ValueError("planted' in full


def test_status_through_the_installed_entry_point(ran: Ran) -> None:
    done = pbtune_process(["status", "--storage", ran.url], cwd=ran.folder)
    assert done.returncode == 0, done.stderr
    assert "study 'tiny'" in done.stdout


def test_trials_as_json_csv_and_table(ran: Ran) -> None:
    trials = read_json(ran, "trials", "--format", "json")
    assert {t["state"] for t in trials} == {"COMPLETE", "FAILED"}
    assert [t["id"] for t in trials] == sorted(t["id"] for t in trials)
    rows = list(csv.DictReader(io.StringIO(ok(["trials", "--storage", ran.url,
                                                "--format", "csv"]))))
    assert [int(r["id"]) for r in rows] == [t["id"] for t in trials]
    for row, trial in zip(rows, trials, strict=True):
        assert float(row["params.lr"]) == trial["params"]["lr"]
        assert row["params.double"] == trial["params"]["double"]
        assert row["state"] == trial["state"]
    failed = read_json(ran, "trials", "--format", "json", "--state", "failed")
    assert failed and all(t["state"] == "FAILED" for t in failed)
    assert all("planted failure" in t["error"] for t in failed)
    last_two = read_json(ran, "trials", "--format", "json", "--limit", "2")
    assert last_two == trials[-2:]
    table = ok(["trials", "--storage", ran.url])
    assert "trials of 'tiny'" in table and "COMPLETE" in table and "lr=" in table


def test_best_as_json_and_text(ran: Ran) -> None:
    best = read_json(ran, "best", "--format", "json")
    complete = [t for t in read_json(ran, "trials", "--format", "json")
                if t["state"] == "COMPLETE"]
    assert best["fitness"] == max(t["fitness"] for t in complete)
    assert best["metrics"]["score"] == best["fitness"]
    text = ok(["best", "--storage", ran.url])
    assert "best trial of 'tiny'" in text and f"│ {best['id']} " in text


def test_schedule_json_and_csv_parse_back(ran: Ran, tmp_path: Path) -> None:
    best = read_json(ran, "best", "--format", "json")
    segments = read_json(ran, "schedule", "--format", "json")
    assert segments[0]["start_step"] == 0 and segments[-1]["end_step"] == 3
    assert segments[-1]["trial_id"] == best["id"]
    assert all(a["end_step"] == b["start_step"] for a, b in itertools.pairwise(segments))
    assert segments[-1]["params"] == best["params"]
    rows = list(csv.DictReader(io.StringIO(ok(["schedule", "--storage", ran.url,
                                                "--format", "csv"]))))
    assert list(rows[0]) == ["start_step", "end_step", "trial_id", "lr", "double"]
    assert [int(r["trial_id"]) for r in rows] == [s["trial_id"] for s in segments]
    assert [float(r["lr"]) for r in rows] == [s["params"]["lr"] for s in segments]
    first = segments[0]["trial_id"]
    assert read_json(ran, "schedule", "--trial", str(first)) == segments[:1]
    out = tmp_path / "schedule.json"
    ok(["schedule", "--storage", ran.url, "--output", str(out)])
    assert json.loads(out.read_text()) == segments


def test_replay_from_a_file_and_from_the_storage(ran: Ran, tmp_path: Path) -> None:
    best = read_json(ran, "best", "--format", "json")
    schedule = tmp_path / "schedule.json"
    ok(["schedule", "--storage", ran.url, "--output", str(schedule)])
    entry = f"{ran.folder / 'train.py'}:train"
    from_file = json.loads(ok(["replay", entry, "--schedule", str(schedule), "--format", "json",
                               "--checkpoint-root", str(tmp_path / "replay")]))
    assert from_file["metrics"]["score"] == pytest.approx(best["fitness"])
    assert Path(from_file["checkpoint"]).parent == tmp_path / "replay"
    text = ok(["replay", entry, "--storage", ran.url, "--study", "tiny",
               "--checkpoint-root", str(tmp_path / "again")])
    assert "final metrics: score=" in text and "steps=3" in text


# -- the study file ----------------------------------------------------------------------------
def test_config_reads_strategies_paths_and_scientific_notation(tmp_path: Path) -> None:
    (tmp_path / "fit.py").write_text("def fitness(m):\n    return -m['loss']\n")
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent("""
        name: s
        fitness: fit.py:fitness
        mode: min
        space: {lr: {type: float, low: 1e-4, high: 1e-1, log: true}}
        exploit: {type: truncation, fraction: 0.2}
        explore: {type: perturb, factors: [0.5, 2.0]}
        checkpoint_root: out/ckpt
    """))
    config = load_config(path)
    assert config.name == "s" and config.storage is None
    assert config.options["space"]["lr"].low == 1e-4
    assert config.options["exploit"] == Truncation(fraction=0.2)
    assert config.options["explore"] == Perturb(factors=(0.5, 2.0))
    assert config.options["checkpoint_root"] == tmp_path.resolve() / "out" / "ckpt"
    assert config.options["fitness"]({"loss": 2.0}) == -2.0
    path.write_text("name: s\nmetric: m\nspace: {x: {type: int, low: 1, high: 4}}\n"
                    "exploit: tournament\n")
    assert load_config(path).options["exploit"] == Tournament()
    path.write_text("name: s\nmetric: m\nspace: {x: {type: int, low: 1, high: 4}}\n"
                    "explore: {type: pb2, history_size: 32, fallback: {type: resample}}\n")
    assert load_config(path).options["explore"] == PB2(history_size=32, fallback=Resample())


# -- errors: one line, non-zero, no traceback ---------------------------------------------------
def assert_one_line_error(result: Result, *needles: str, code: int | None = None) -> str:
    assert result.exit_code != 0, result.output
    assert code is None or result.exit_code == code
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        ("bogus: 1\n", ["unknown key(s) 'bogus'", "allowed: " + ", ".join(ALLOWED_KEYS)]),
        ("exploit: {type: truncation, frac: 0.2}\n", ["unknown settings ['frac']"]),
        ("population_size: many\n", ["population_size must be an int"]),
        ("space: [1, 2]\n", ["'space' must be a mapping"]),
        ("space: {lr: {type: float, low: 2, high: 1}}\n", ["parameter 'lr'", "low < high"]),
        ("space: {lr: {type: real, low: 0, high: 1}}\n", ["parameter 'lr'", "type must be"]),
        ("space: {lr: {type: float, low: 0, high: 1, scale: 2}}\n", ["parameter 'lr'"]),
        ("space: {lr: {type: float\n", ["invalid YAML"]),
        ("loggers: [{type: wandb}]\n",
         ["'type' is one of tensorboard, mlflow (or 'module:Class' for your own)"]),
        ("loggers: {type: tensorboard, logdir: runs}\n",
         ["logger tensorboard: unknown setting(s) logdir; allowed: log_dir, per"]),
        ("loggers: 3\n", ["'loggers' must be a list like [{type: tensorboard"]),
    ],
)
def test_bad_study_files(tmp_path: Path, extra: str, needles: list[str]) -> None:
    base = "name: e\nmetric: score\n"
    if not extra.startswith("space"):
        base += "space: {lr: {type: float, low: 0.1, high: 1}}\n"
    (tmp_path / "study.yaml").write_text(base + extra)
    (tmp_path / "train.py").write_text(TRAIN)
    db = tmp_path / "e.db"
    result = invoke(["run", f"{tmp_path / 'train.py'}:train", "--config",
                     str(tmp_path / "study.yaml"), "--storage", f"sqlite:///{db}"])
    assert_one_line_error(result, "study.yaml: ", *needles, code=1)
    assert not db.exists()


def test_bad_entries_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "study.yaml").write_text(STUDY_YAML)
    config = str(tmp_path / "study.yaml")
    missing = invoke(["run", "train.py:train", "--config", str(tmp_path / "nope.yaml")])
    assert_one_line_error(missing, "cannot read study file", "nope.yaml")
    no_file = invoke(["run", f"{tmp_path / 'nope.py'}:train", "--config", config])
    assert_one_line_error(no_file, "no such file")
    no_module = invoke(["run", "pbtune_no_such_module:train", "--config", config])
    assert_one_line_error(no_module, "cannot import training function")
    no_colon = invoke(["run", "train", "--config", config])
    assert_one_line_error(no_colon, "'module:name' or 'file.py:name'")


def test_entry_and_command_are_one_or_the_other(tmp_path: Path) -> None:
    (tmp_path / "study.yaml").write_text(STUDY_YAML)
    config = str(tmp_path / "study.yaml")
    db = tmp_path / "e.db"
    both = invoke(["run", "train.py:train", "--command", "sh train.sh", "--config", config,
                   "--storage", f"sqlite:///{db}"])
    assert_one_line_error(both, "either ENTRY or --command, not both", code=2)
    neither = invoke(["run", "--config", config, "--storage", f"sqlite:///{db}"])
    assert_one_line_error(neither, "give the training function as ENTRY", "--command", code=2)
    unbalanced = invoke(["run", "--command", "sh 'train.sh", "--config", config,
                         "--storage", f"sqlite:///{db}"])
    assert_one_line_error(unbalanced, "No closing quotation", code=2)
    assert not db.exists()


def test_the_study_file_may_name_the_command(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(STUDY_YAML + "command: python train.py --fast\n")
    assert load_config(path).command == "python train.py --fast"
    path.write_text(STUDY_YAML + "command: [python, train.py]\n")
    assert load_config(path).command == ["python", "train.py"]
    path.write_text(STUDY_YAML + "command: 3\n")
    result = invoke(["run", "--config", str(path)])
    assert_one_line_error(result, "'command' must be a string", code=1)


def test_run_with_a_command_from_the_study_file(tmp_path: Path) -> None:
    write = (
        "import json, os\n"
        "open(os.path.join(os.environ['PBTUNE_CHECKPOINT_DIR'], 'state'), 'w').write('1')\n"
        "json.dump({'score': float(os.environ['PBTUNE_END_STEP'])},"
        " open(os.environ['PBTUNE_METRICS_FILE'], 'w'))\n"
    )
    (tmp_path / "prog.py").write_text(write)
    path = tmp_path / "study.yaml"
    command = json.dumps([sys.executable, str(tmp_path / "prog.py")])
    path.write_text(STUDY_YAML.replace("name: tiny", "name: cmd") + f"command: {command}\n")
    db = tmp_path / "cmd.db"
    result = invoke(["run", "--config", str(path), "--storage", f"sqlite:///{db}",
                     "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "study 'cmd' COMPLETE" in result.stdout


def test_read_errors(ran: Ran, tmp_path: Path) -> None:
    assert_one_line_error(invoke(["status", "--storage", ran.url, "--study", "nope"]),
                          "no study named 'nope'", "'tiny'", code=1)
    assert_one_line_error(invoke(["best", "--storage", "mysql://host/db"]),
                          "unsupported storage backend 'mysql'")
    assert_one_line_error(invoke(["trials", "--storage", "not a url"]),
                          "cannot parse storage URL")
    missing = tmp_path / "missing.db"
    for command in ("status", "trials", "best", "schedule"):
        assert_one_line_error(invoke([command, "--storage", f"sqlite:///{missing}"]),
                              "no database file", str(missing))
    assert not missing.exists()
    assert_one_line_error(invoke(["schedule", "--storage", ran.url, "--trial", "9999"]),
                          "has no trial 9999", "numbered in the order they were made (0 to")
    assert_one_line_error(invoke(["best", "--storage", ran.url, "--format", "yaml"]),
                          "'--format'", "pbtune best --help", code=2)
    assert_one_line_error(invoke(["replay", "x.py:train", "--schedule", "s.json",
                                  "--study", "tiny"]), "not both", code=2)
    assert_one_line_error(invoke(["nonsense"]), "No such command", code=2)


def test_a_storage_with_two_studies_needs_study(tmp_path: Path) -> None:
    import pbtune

    url = f"sqlite:///{tmp_path / 'two.db'}"
    for name in ("first", "second"):
        pbtune.create_study(name, storage=url, metric="m", population_size=2,
                            steps_per_trial=1, max_steps=2, checkpoint_root=tmp_path,
                            space={"x": pbtune.Int(1, 3)})
    result = invoke(["trials", "--storage", url])
    assert_one_line_error(result, "pick one with --study", "first", "second")
    assert "no COMPLETE trial" in assert_one_line_error(
        invoke(["best", "--storage", url, "--study", "first"])
    )
    assert "study 'second'" in ok(["status", "--storage", url])


def test_replay_reports_a_failing_training_function_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("def train(trial):\n    raise RuntimeError('no gpu')\n")
    (tmp_path / "s.json").write_text(json.dumps(
        [{"start_step": 0, "end_step": 1, "params": {"lr": 0.1}}]
    ))
    result = invoke(["replay", f"{tmp_path / 'bad.py'}:train", "--schedule",
                     str(tmp_path / "s.json"), "--checkpoint-root", str(tmp_path / "r")])
    assert_one_line_error(result, "RuntimeError: no gpu", "bad.py:2")


def test_an_error_through_the_installed_entry_point(tmp_path: Path) -> None:
    done = pbtune_process(["best", "--storage", f"sqlite:///{tmp_path / 'x.db'}"], cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: no database file") and done.stderr.count("\n") == 1
