"""Training functions for tests/reliability/test_bad_input.py.

Worker processes import them by path ("tests/reliability/bad_input_workload.py:name"), so
they live at module level and read their settings from environment variables.

`misbehaves` returns a different kind of bad result depending on the trial's number
(`KINDS`); numbers past the table train normally. A member's first segment writes nothing
into its checkpoint directory (that is allowed); later segments write ``state.json``. Every
trial that has a parent records what it found in the parent's directory, so the test can
check that a child of an empty checkpoint gets an empty directory.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

import pbtune

METRIC = "score"
SEEN_ENV = "PBTUNE_BAD_INPUT_SEEN"

# (kind, the text its FAILED trial's error must hold, or None: the result is accepted)
KINDS: list[tuple[str, str | None]] = [
    ("numpy_float64", None),  # trial 0 completes, so the study never fails as a whole
    ("nan", "metric 'score' is nan; metrics must be finite"),
    ("inf", "metric 'score' is inf; metrics must be finite"),
    ("minus_inf", "metric 'score' is -inf; metrics must be finite"),
    ("none_value", "metric 'score' is None; metrics must be numbers"),
    ("string", "metric 'score' is '0.5'; metrics must be numbers"),
    ("list", "metric 'score' is [0.5]; metrics must be numbers"),
    ("missing", "lack the study's metric 'score'"),
    ("not_a_dict", "returned 0.5; it must return a dict of metrics"),
    ("returns_none", "returned None; it must return a dict of metrics"),
    ("int_key", "metric names must be strings, got 7 (int)"),
    ("bool", "metric 'score' is True; metrics must be numbers"),
    ("numpy_bool", "metric 'score' is np.True_; metrics must be numbers"),
    ("numpy_array", "metric 'score' is array([0.5]); metrics must be numbers"),
    ("raises", "ValueError: planted failure in trial 14"),
    ("hangs", "timed out: ran longer than trial_timeout"),
    ("numpy_int64", None),
    ("numpy_float32", None),
]


def _score(trial: pbtune.Trial) -> float:
    """A number that grows with the steps trained and depends on every param."""
    total = 0.0
    for value in trial.params.values():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            total += float(value)
        else:
            total += len(str(value))
    return float(trial.end_step) + 1e-3 * math.tanh(total)


def _explode(number: int) -> None:
    raise ValueError(f"planted failure in trial {number}")


def _bad_result(kind: str, trial: pbtune.Trial, score: float) -> Any:
    results: dict[str, Any] = {
        "numpy_float64": {METRIC: np.float64(score)},
        "nan": {METRIC: math.nan},
        "inf": {METRIC: math.inf},
        "minus_inf": {METRIC: -math.inf},
        "none_value": {METRIC: None},
        "string": {METRIC: "0.5"},
        "list": {METRIC: [0.5]},
        "missing": {"not_" + METRIC: score},
        "not_a_dict": 0.5,
        "returns_none": None,
        "int_key": {METRIC: score, 7: 1.0},
        "bool": {METRIC: True},
        "numpy_bool": {METRIC: np.bool_(True)},
        "numpy_array": {METRIC: np.array([0.5])},
        "numpy_int64": {METRIC: np.int64(round(score)), "exact": np.float64(score)},
        "numpy_float32": {METRIC: np.float32(score), "steps": np.int32(trial.end_step)},
    }
    if kind == "raises":
        _explode(trial.number)
    if kind == "hangs":
        time.sleep(600)  # killed by trial_timeout long before this
    return results[kind]


def _record_parent(trial: pbtune.Trial) -> None:
    folder = os.environ.get(SEEN_ENV)
    if not folder or trial.parent_checkpoint is None:
        return
    parent = Path(trial.parent_checkpoint)
    seen = {
        "trial_id": trial.id,
        "is_dir": parent.is_dir(),
        "files": sorted(p.name for p in parent.iterdir()) if parent.is_dir() else None,
    }
    (Path(folder) / f"seen-{trial.number}.json").write_text(json.dumps(seen))


def misbehaves(trial: pbtune.Trial) -> Any:
    """Bad results by trial number (`KINDS`), then normal training."""
    _record_parent(trial)
    score = _score(trial)
    (trial.checkpoint_dir / "state.json").write_text(json.dumps({"score": score}))
    if trial.number < len(KINDS):
        return _bad_result(KINDS[trial.number][0], trial, score)
    return {METRIC: score}


def well_behaved(trial: pbtune.Trial) -> dict[str, float]:
    """Writes a small checkpoint and returns a finite score."""
    _record_parent(trial)
    (trial.checkpoint_dir / "state.json").write_text(json.dumps({"params": trial.params}))
    trial.report(trial.start_step, **{METRIC: 0.0})
    return {METRIC: _score(trial)}
