"""`pbtune delete`, and `pbtune run` given a study file whose settings changed: a raised
budget continues the study, other changes are one line naming the stored and given values
and the command that resolves them."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import pbtune
from pbtune.cli import _delete, cli
from pbtune.controller import Claimed, Controller

TRAIN = '''
import json


def train(trial):
    score = 0.0
    if trial.parent_checkpoint is not None:
        score = json.loads((trial.parent_checkpoint / "state.json").read_text())["score"]
    score += trial.params["lr"] * (trial.end_step - trial.start_step)
    (trial.checkpoint_dir / "state.json").write_text(json.dumps({"score": score}))
    return {"score": score}
'''

STUDY_YAML = """
name: tiny
metric: score
population_size: 2
steps_per_trial: 2
max_steps: 4
seed: 1
space:
  lr: {type: float, low: 0.001, high: 1.0, log: true}
checkpoint_root: ckpt
"""


def invoke(args: Sequence[str], input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="pbtune", input=input)


def one_line_error(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "study.yaml").write_text(STUDY_YAML)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def url_of(folder: Path) -> str:
    return f"sqlite:///{folder / 'cli.db'}"


def run_file(folder: Path, *extra: str) -> Result:
    return invoke(["run", "train.py:train", "--config", "study.yaml", "--storage",
                   url_of(folder), "--no-progress", *extra])


def make_two_studies(folder: Path) -> tuple[pbtune.Study, pbtune.Study]:
    for name in ("tiny", "other"):
        assert run_file(folder, "--study", name).exit_code == 0
    storage = url_of(folder)
    return pbtune.load_study("tiny", storage=storage), pbtune.load_study("other", storage=storage)


# -- pbtune delete ----------------------------------------------------------------------------


def test_delete_with_yes_removes_the_study_and_its_checkpoints_only(folder: Path) -> None:
    tiny, other = make_two_studies(folder)
    trials = len(tiny.trials())
    other_trials, other_files = other.trials(), sorted(Path(other.checkpoint_dir).iterdir())
    result = invoke(["delete", "--storage", url_of(folder), "--study", "tiny", "--yes"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"deleted study 'tiny': {trials} trial(s), and its checkpoints "
                             f"in {tiny.checkpoint_dir}\n")
    assert not Path(tiny.checkpoint_dir).exists()
    assert [s.name for s in other.storage.list_studies()] == ["other"]
    assert other.trials() == other_trials
    assert sorted(Path(other.checkpoint_dir).iterdir()) == other_files


def test_delete_asks_on_a_terminal(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny, _ = make_two_studies(folder)
    monkeypatch.setattr(_delete, "stdin_is_terminal", lambda: True)
    args = ["delete", "--storage", url_of(folder), "--study", "tiny"]
    declined = invoke(args, input="n\n")
    assert declined.exit_code == 1
    question = (f"Delete study 'tiny' (COMPLETE, 4 trial(s)) and its checkpoints in "
                f"{tiny.checkpoint_dir}? [y/N]: n")
    assert declined.stderr.splitlines() == [question, "Nothing was deleted."]
    assert len(tiny.trials()) == 4 and Path(tiny.checkpoint_dir).is_dir()
    accepted = invoke(args, input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "deleted study 'tiny'" in accepted.stdout
    assert [s.name for s in tiny.storage.list_studies()] == ["other"]


def test_delete_without_a_terminal_needs_yes(folder: Path) -> None:
    tiny, _ = make_two_studies(folder)
    line = one_line_error(invoke(["delete", "--storage", url_of(folder), "--study", "tiny"]),
                          code=2)
    assert "stdin is not a terminal; pass --yes to delete study 'tiny'" in line
    assert len(tiny.trials()) == 4


def test_delete_a_study_that_does_not_exist(folder: Path) -> None:
    make_two_studies(folder)
    line = one_line_error(invoke(["delete", "--storage", url_of(folder), "--study", "tinny",
                                  "--yes"]))
    assert "no study named 'tinny'" in line and "studies here: 'tiny', 'other'" in line
    missing = folder / "missing.db"
    line = one_line_error(invoke(["delete", "--storage", f"sqlite:///{missing}", "--study",
                                  "tiny", "--yes"]))
    assert "no database file" in line and not missing.exists()
    line = one_line_error(invoke(["delete", "--storage", url_of(folder), "--yes"]), code=2)
    assert "Missing option '--study'" in line


def test_delete_refuses_a_study_whose_workers_run(folder: Path) -> None:
    tiny, _ = make_two_studies(folder)
    tiny.extend(max_steps=6)  # queued trials again, one of them claimed below
    held = Controller(tiny.storage, tiny.storage.get_study("tiny"), tiny.config).ask("h:1:w")
    assert isinstance(held, Claimed)
    line = one_line_error(invoke(["delete", "--storage", url_of(folder), "--study", "tiny",
                                  "--yes"]))
    assert "study 'tiny' is in use: workers hold 1 of its trials" in line
    assert "Stop those workers" in line
    assert tiny.storage.get_study("tiny").name == "tiny"


# -- pbtune run with a changed study file -----------------------------------------------------


def test_run_with_a_raised_max_steps_continues_every_member(
    folder: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    assert run_file(folder).exit_code == 0
    study = pbtune.load_study("tiny", storage=url_of(folder))
    assert study.best_trial.end_step == 4
    (folder / "study.yaml").write_text(STUDY_YAML.replace("max_steps: 4", "max_steps: 8"))
    result = run_file(folder)
    assert result.exit_code == 0, result.output
    # a warning: on a terminal without a logging setup, Python prints it on stderr
    assert "study 'tiny' goes on with changed settings: max_steps: 4 -> 8" in caplog.text
    best = study.best_trial
    assert best.end_step == 8
    lineage = study.lineage(best.id)
    assert [(t.start_step, t.end_step) for t in lineage] == [(0, 2), (2, 4), (4, 6), (6, 8)]


def test_run_with_a_changed_space_says_both_values_and_how_to_start_over(folder: Path) -> None:
    assert run_file(folder).exit_code == 0
    changed = STUDY_YAML.replace("high: 1.0", "high: 0.5").replace("population_size: 2",
                                                                   "population_size: 3")
    (folder / "study.yaml").write_text(changed)
    line = one_line_error(run_file(folder))
    url = url_of(folder)
    assert ("study 'tiny' exists with other settings: space.lr.high: 1.0 -> 0.5; "
            "population_size: 2 -> 3.") in line
    command = f"pbtune delete --storage {shlex.quote(url)} --study tiny --yes"
    assert command in line and "put the stored values back in study.yaml" in line
    assert "pbtune.delete_study" not in line  # the command line's advice, not Python's
    # the advice works: delete, then run again
    deleted = invoke(shlex.split(command)[1:])
    assert deleted.exit_code == 0, deleted.output
    assert run_file(folder).exit_code == 0
    study = pbtune.load_study("tiny", storage=url)
    assert study.config.population_size == 3 and study.config.space["lr"].high == 0.5


def test_run_a_study_file_with_stop_rules_then_without_them(
    folder: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    (folder / "study.yaml").write_text(
        STUDY_YAML.replace("max_steps: 4", "max_steps: 12")
        + "stop: [{type: total_steps, steps: 8}]\n")
    result = run_file(folder)
    assert result.exit_code == 0, result.output
    assert "stopped: " in result.stdout and "(TotalSteps(8))" in result.stdout
    again = run_file(folder)  # the same file: nothing left to run, and it says why
    assert again.exit_code == 0 and "(TotalSteps(8))" in again.stdout
    # Without the rule the study runs again and trains every member to max_steps.
    (folder / "study.yaml").write_text(STUDY_YAML.replace("max_steps: 4", "max_steps: 12"))
    result = run_file(folder)
    assert result.exit_code == 0, result.output
    assert "stopped" not in result.stdout and "24/24 steps" in result.stdout
    assert "study 'tiny' runs again" in caplog.text
