"""`pbtune.loggers` without its libraries: a missing one is one clear error with the pip
command, and reading a study file's ``loggers:`` imports neither. The loggers themselves,
with TensorBoard and MLflow installed, are tested in tests/integrations/test_loggers.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from pbtune import ConfigError
from pbtune.cli import cli
from pbtune.loggers import MLflow, TensorBoard, logger_specs

STUDY = """
name: logged
metric: score
population_size: 2
steps_per_trial: 1
max_steps: 2
space: {lr: {type: float, low: 0.1, high: 1.0}}
checkpoint_root: ckpt
loggers:
  - {type: tensorboard, log_dir: runs, per: member}
  - {type: mlflow, tracking_uri: "sqlite:///mlflow.db"}
"""

TRAIN = """
def train(trial):
    (trial.checkpoint_dir / "done").write_text("1")
    return {"score": trial.params["lr"] * trial.end_step}
"""


def hide(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Make ``package`` (and every module of it already imported) fail to import."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)


@pytest.mark.parametrize(("make", "package", "extra"), [
    (lambda: TensorBoard("runs"), "tensorboard", "tensorboard"),
    (lambda: MLflow("sqlite:///mlflow.db"), "mlflow", "mlflow"),
])
def test_a_missing_library_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make: object, package: str,
        extra: str) -> None:
    monkeypatch.chdir(tmp_path)
    hide(monkeypatch, package)
    with pytest.raises(ConfigError, match=rf"pip install 'pbtune\[{extra}\]'"):
        make()  # type: ignore[operator]
    assert list(tmp_path.iterdir()) == []


def test_run_with_a_missing_library_is_one_line_before_anything_is_made(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.yaml").write_text(STUDY)
    (tmp_path / "train.py").write_text(TRAIN)
    hide(monkeypatch, "tensorboard")
    result = CliRunner().invoke(cli, ["run", "train.py:train", "--config", "study.yaml",
                                      "--storage", "sqlite:///pbtune.db"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: study.yaml: "), result.stderr
    assert "pip install 'pbtune[tensorboard]'" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml", "train.py"]


def test_reading_a_study_file_imports_no_tracker(tmp_path: Path) -> None:
    """`pbtune create` reads ``loggers:`` (checked) but makes none: the machine that
    creates a study needs neither library, nor gets an ``mlflow.db``."""
    (tmp_path / "study.yaml").write_text(STUDY)
    code = textwrap.dedent("""
        import sys
        from pbtune.cli._config import load_config
        config = load_config("study.yaml")
        print([spec.kind for spec in config.loggers])
        print(sorted(m for m in ("tensorboard", "mlflow") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert out[:2] == ["['tensorboard', 'mlflow']", "[]"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


def test_logger_specs_take_one_or_a_list_or_a_name() -> None:
    assert [s.kind for s in logger_specs("tensorboard")] == ["tensorboard"]
    assert [s.kind for s in logger_specs({"type": "mlflow", "experiment": "x"})] == ["mlflow"]
    specs = logger_specs([{"type": "tensorboard", "log_dir": "tb"}, "mlflow",
                          {"type": "mine.py:Logger", "level": 2}])
    assert [(s.kind, s.settings) for s in specs] == [
        ("tensorboard", {"log_dir": "tb"}), ("mlflow", {}), ("mine.py:Logger", {"level": 2})]
    assert logger_specs(None) == []
    with pytest.raises(ConfigError, match="one of tensorboard, mlflow"):
        logger_specs([{"log_dir": "runs"}])


def test_a_logger_class_of_your_own_beside_the_study_file(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(textwrap.dedent("""
        class Logger:
            def __init__(self, prefix):
                self.prefix = prefix
            def __call__(self, trial):
                print(self.prefix, trial.number)
    """))
    (spec,) = logger_specs({"type": "mine.py:Logger", "prefix": "done"})
    logger = spec.make(tmp_path)
    assert type(logger).__name__ == "Logger" and logger.prefix == "done"  # type: ignore[attr-defined]
    (bad,) = logger_specs({"type": "mine.py:Logger", "prefix": 1, "colour": "red"})
    with pytest.raises(ConfigError, match=r"logger 'mine\.py:Logger': .*colour"):
        bad.make(tmp_path)


def test_worker_needs_a_storage_and_a_study_or_the_study_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["worker", "--entry", "train.py:train"])
    assert result.exit_code == 2, result.output
    assert "give --storage URL and --study NAME, or --config FILE" in result.stderr
