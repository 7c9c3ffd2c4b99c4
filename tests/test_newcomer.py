"""The mistakes a newcomer makes first get one clear message that says what to write."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import pbtune
from pbtune import ConfigError, SearchSpaceError, TrialState
from pbtune.cli import cli
from pbtune.worker._sendable import names_defined_on_import

TRAIN = '''
import pbtune

def train(trial):
    (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
    return {"acc": trial.params["lr"] * trial.end_step}
'''
STUDY = '''
study = pbtune.create_study(
    name="s", storage="sqlite:///s.db", space={"lr": pbtune.Float(0.01, 0.1)},
    metric="acc", population_size=3, steps_per_trial=2, max_steps=4,
    checkpoint_root="ckpt", load_if_exists=True)
study.optimize(train, workers=2, show_progress=False)
print("best", study.best_trial.id)
'''


def run_script(folder: Path, source: str) -> subprocess.CompletedProcess[str]:
    (folder / "script.py").write_text(source)
    return subprocess.run([sys.executable, "script.py"], cwd=folder, capture_output=True,
                          text=True, timeout=120)


def test_a_script_without_the_main_guard_gets_one_message_and_loses_nothing(
    tmp_path: Path,
) -> None:
    ran = run_script(tmp_path, TRAIN + STUDY)
    assert ran.returncode == 1
    assert ran.stderr.count("Traceback") == 1, ran.stderr  # the script's own, once
    assert "freeze_support" not in ran.stderr and "load_if_exists" in ran.stderr
    assert "DuplicatedStudyError" not in ran.stderr
    assert 'if __name__ == "__main__":' in ran.stderr and "script.py" in ran.stderr
    study = pbtune.load_study("s", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert not study.trials([TrialState.RUNNING, TrialState.FAILED, TrialState.LOST])
    study.storage.dispose()
    # The advice, followed: the same script with the guard finishes the same study.
    guarded = TRAIN + 'if __name__ == "__main__":\n' + textwrap.indent(STUDY, "    ")
    ran = run_script(tmp_path, guarded)
    assert ran.returncode == 0, ran.stderr
    assert "best" in ran.stdout


def test_a_train_defined_under_the_main_guard_is_refused_up_front(tmp_path: Path) -> None:
    source = 'import pbtune\nif __name__ == "__main__":\n' + textwrap.indent(
        TRAIN.replace("import pbtune\n", "") + STUDY, "    ")
    ran = run_script(tmp_path, source)
    assert ran.returncode == 1
    last = ran.stderr.strip().splitlines()[-1]
    assert last.startswith("pbtune._errors.ConfigError: the training function 'train' is "
                           "defined under `if __name__ == \"__main__\":`"), ran.stderr
    assert "AttributeError" not in ran.stderr and "backend=\"thread\"" in last
    study = pbtune.load_study("s", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert all(t.state == TrialState.QUEUED for t in study.trials())  # nothing ran
    study.storage.dispose()


def test_pbtune_run_of_a_script_that_runs_a_study_when_imported(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "script.py").write_text(TRAIN + STUDY)
    (tmp_path / "study.yaml").write_text(textwrap.dedent("""
        name: cli
        storage: sqlite:///cli.db
        metric: acc
        population_size: 2
        steps_per_trial: 2
        max_steps: 4
        space:
          lr: {type: float, low: 0.01, high: 0.1}
    """))
    result = CliRunner().invoke(cli, ["run", "script.py:train", "--config", "study.yaml",
                                      "--no-progress"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "creates a study when it is imported" in lines[0], lines
    assert not (tmp_path / "s.db").exists()  # the script's own study was never made


def _nested_train() -> object:
    def train(trial: pbtune.Trial) -> dict[str, float]:
        return {"acc": 1.0}

    return train


def test_functions_workers_cannot_import_are_refused_before_any_starts(tmp_path: Path) -> None:
    study = pbtune.create_study("p", storage=f"sqlite:///{tmp_path / 'p.db'}",
                                space={"lr": pbtune.Float(0.01, 0.1)}, metric="acc",
                                population_size=2, steps_per_trial=1, max_steps=2,
                                checkpoint_root=tmp_path / "ckpt")
    with pytest.raises(ConfigError, match=r"'_nested_train.<locals>.train' cannot be sent to "
                                          r"worker processes: it is defined inside another "
                                          r"function.*backend=\"thread\""):
        study.optimize(_nested_train(), workers=2)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"it is a lambda"):
        study.optimize(lambda trial: {"acc": 1.0}, workers=2)
    assert all(t.state == TrialState.QUEUED for t in study.trials())


def test_a_training_function_without_the_trial_argument_is_refused(tmp_path: Path) -> None:
    study = pbtune.create_study("a", storage=None, space={"lr": pbtune.Float(0.01, 0.1)},
                                metric="acc", population_size=2, steps_per_trial=1,
                                max_steps=2, checkpoint_root=tmp_path)

    def train() -> dict[str, float]:
        return {"acc": 1.0}

    with pytest.raises(ConfigError, match=r"must take one argument, the pbtune.Trial, but its "
                                          r"signature is train\(\)"):
        study.optimize(train)  # type: ignore[arg-type]
    assert all(t.state == TrialState.QUEUED for t in study.trials())


@pytest.mark.parametrize(("value", "advice"), [
    (0.01, "pbtune.Choice([0.01], mutable=False)"),
    ([1e-4, 1e-1], "a range is pbtune.Float(0.0001, 0.1)"),
    ([16, 256], "a range is pbtune.Int(16, 256)"),
    (["sgd", "adam"], "pbtune.Choice(['sgd', 'adam'])"),
])
def test_a_plain_value_in_the_space_says_how_to_write_it(value: object, advice: str) -> None:
    with pytest.raises(SearchSpaceError) as raised:
        pbtune.SearchSpace({"lr": value})  # type: ignore[dict-item]
    assert advice in str(raised.value)


def test_names_defined_on_import_skip_the_main_guard() -> None:
    import ast

    source = textwrap.dedent('''
        import os, numpy as np
        from pathlib import Path as P
        def top(): ...
        class Model: ...
        X: int = 1
        try:
            import torch
        except ImportError:
            torch = None
        if os.name == "posix":
            def posix_only(): ...
        if "__main__" == __name__:
            def hidden(): ...
        else:
            def imported_only(): ...
    ''')
    names = names_defined_on_import(ast.parse(source))
    assert {"os", "np", "P", "top", "Model", "X", "torch", "posix_only",
            "imported_only"} <= names
    assert "hidden" not in names


def test_a_script_read_from_stdin_is_refused_with_one_message(tmp_path: Path) -> None:
    ran = subprocess.run([sys.executable, "-"], input=TRAIN + STUDY, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 1
    assert ran.stderr.count("Traceback") == 1, ran.stderr
    last = ran.stderr.strip().splitlines()[-1]
    assert "a script read from stdin" in last and "save it in a .py file" in last, last
