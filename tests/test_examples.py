"""The examples run end to end (SQLite storage, worker processes) and show what they claim."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # On sys.path, so that the spawned worker processes import the module by name too.
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module(name)


def common_args(tmp_path: Path) -> list[str]:
    return [
        "--storage",
        f"sqlite:///{tmp_path / 'study.db'}",
        "--checkpoint-root",
        str(tmp_path / "checkpoints"),
        "--workers",
        "2",
        "--quiet",
    ]


def test_toy_quadratic_reaches_q_above_1_19(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toy = load_example("toy_quadratic", monkeypatch)
    args = [*common_args(tmp_path), "--seed", "0", "--population", "4"]
    summary = toy.main(args)
    assert summary["best_q"] > 1.19
    assert summary["exploits"] > 0
    schedule = summary["schedule"]
    assert schedule[0]["start_step"] == 0 and schedule[-1]["end_step"] == summary["best_step"]

    # The same command again finds the finished study and changes nothing.
    again = toy.main(args)
    assert again["best_trial"] == summary["best_trial"]
    assert again["trials"] == summary["trials"]


def test_toy_quadratic_train_warm_starts_from_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pbtune

    toy = load_example("toy_quadratic", monkeypatch)
    schedule = [
        pbtune.Segment(0, 4, {"h0": 1.0, "h1": 0.0}),
        pbtune.Segment(4, 8, {"h0": 0.0, "h1": 1.0}),
    ]
    result = pbtune.replay(toy.train, schedule, checkpoint_root=tmp_path)
    theta = [0.9 * 0.98**4, 0.9 * 0.98**4]  # each coordinate moved only while its h was 1
    assert result.metrics["q"] == pytest.approx(1.2 - (theta[0] ** 2 + theta[1] ** 2))


def test_digits_mlp_beats_random_search_and_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("sklearn")
    digits = load_example("digits_mlp", monkeypatch)
    summary = digits.main(
        [
            *common_args(tmp_path),
            "--seed",
            "0",
            "--population",
            "8",
            "--steps-per-trial",
            "100",
            "--max-steps",
            "600",
        ]
    )
    assert len(summary["random_search_accuracies"]) == 8
    assert summary["best_accuracy"] > summary["random_search_median"]
    assert abs(summary["replay_accuracy"] - summary["best_accuracy"]) <= 0.02
    assert summary["best_accuracy"] > 0.9


def test_the_readme_quickstart_is_the_example_and_runs(tmp_path: Path) -> None:
    import re
    import subprocess
    import sys

    readme = (EXAMPLES.parent / "README.md").read_text()
    section = readme[readme.index("## Quickstart"):]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    source = (EXAMPLES / "quickstart.py").read_text()
    assert block is not None and block.group(1) == source
    ran = subprocess.run([sys.executable, str(EXAMPLES / "quickstart.py")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    import pbtune

    study = pbtune.load_study("quickstart", storage=f"sqlite:///{tmp_path / 'quickstart.db'}")
    assert study.state == pbtune.StudyState.COMPLETE
    assert study.best_trial.end_step == 200 and str(study.best_value) in ran.stdout
    assert [s.start_step for s in study.schedule()] == list(range(0, 200, 10))
    # The noise of a segment depends on its steps only: a replay retrains the same model.
    quickstart = _import_file(EXAMPLES / "quickstart.py")
    replayed = pbtune.replay(quickstart.train, study.schedule(),
                             checkpoint_root=tmp_path / "replay", seed=study.config.seed)
    assert replayed.metrics == study.best_trial.metrics


def _import_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
