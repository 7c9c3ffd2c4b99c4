"""Training functions for the end-to-end tests; worker processes import them by path."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import pbtune


def _theta(trial: pbtune.Trial) -> list[float]:
    if trial.parent_checkpoint is None:
        return [0.9, 0.9]
    data = json.loads((trial.parent_checkpoint / "theta.json").read_text())
    return [float(x) for x in data["theta"]]


def quadratic(trial: pbtune.Trial) -> dict[str, float]:
    """Jaderberg et al.'s toy: ascend 1.2 - (h0 t0^2 + h1 t1^2); fitness is 1.2 - |t|^2."""
    theta = _theta(trial)
    h = (trial.params["h0"], trial.params["h1"])
    for _ in range(trial.start_step, trial.end_step):
        theta = [theta[0] - 0.02 * h[0] * theta[0], theta[1] - 0.02 * h[1] * theta[1]]
    delay = float(os.environ.get("PBTUNE_TEST_DELAY", "0"))
    if delay:
        time.sleep(delay)
    (trial.checkpoint_dir / "theta.json").write_text(
        json.dumps({"theta": theta, "end_step": trial.end_step})
    )
    return {"q": 1.2 - (theta[0] ** 2 + theta[1] ** 2)}


def always_raises(trial: pbtune.Trial) -> dict[str, float]:
    raise RuntimeError(f"broken training code for member {trial.member}")


def flaky(trial: pbtune.Trial) -> dict[str, float]:
    """Fails the first attempt of members 0, 1 and 2's first trials (a NaN, a raise, a
    missing metric) and of member 3's trial from step 20 (a NaN): trials that every
    schedule has in a study of 24 steps, whatever the exploits, unlike trial numbers."""
    plan = {(0, 0): "nan", (1, 0): "raise", (2, 0): "missing", (3, 20): "nan"}
    kind = plan.get((trial.member, trial.start_step))
    marker = Path(os.environ["PBTUNE_TEST_MARKERS"]) / f"{trial.member}-{trial.start_step}"
    if kind is not None and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        if kind == "nan":
            return {"q": math.nan}
        if kind == "raise":
            raise ValueError("flaky failure")
        return {"not_q": 1.0}
    return quadratic(trial)


def hangs_once(trial: pbtune.Trial) -> dict[str, float]:
    """The first attempt of member 0's first trial hangs until it is killed."""
    marker = Path(os.environ["PBTUNE_TEST_MARKERS"]) / "hung"
    if trial.member == 0 and trial.start_step == 0 and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        time.sleep(3600)
    return quadratic(trial)


def kills_its_process(trial: pbtune.Trial) -> dict[str, float]:
    """Training code that takes its whole process down, every time."""
    os._exit(3)


def exits_once(trial: pbtune.Trial) -> dict[str, float]:
    """sys.exit() in training code: the first attempt of member 0's first trial."""
    marker = Path(os.environ["PBTUNE_TEST_MARKERS"]) / "exited"
    if trial.member == 0 and trial.start_step == 0 and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        raise SystemExit(0)
    return quadratic(trial)


def train_without_score(trial: pbtune.Trial) -> dict[str, float]:
    """Trains like `quadratic` but reports only a loss: the score comes from `evaluate_q`."""
    q = quadratic(trial)["q"]
    return {"loss": 1.2 - q}


def evaluate_q(trial: pbtune.Trial) -> dict[str, float]:
    """Scores the checkpoint training just wrote, rounded (a non-differentiable metric)."""
    theta = json.loads((trial.checkpoint_dir / "theta.json").read_text())["theta"]
    return {"q": round(1.2 - (theta[0] ** 2 + theta[1] ** 2), 4), "evaluated": 1.0}


def evaluate_raises(trial: pbtune.Trial) -> dict[str, float]:
    raise RuntimeError(f"the external scorer is down (trial {trial.id})")


def warm_started(trial: pbtune.Trial) -> dict[str, float]:
    """`quadratic`, checking that it sees local directories and that its parent's checkpoint
    carries the step it resumes from (what a remote store must deliver intact)."""
    assert isinstance(trial.checkpoint_dir, Path) and trial.checkpoint_dir.is_dir()
    if trial.parent_checkpoint is not None:
        assert isinstance(trial.parent_checkpoint, Path) and trial.parent_checkpoint.is_dir()
        carried = json.loads((trial.parent_checkpoint / "theta.json").read_text())
        if carried["end_step"] != trial.start_step:
            raise RuntimeError(
                f"parent checkpoint ends at step {carried['end_step']}, the trial starts at "
                f"{trial.start_step}"
            )
        (trial.checkpoint_dir / "nested").mkdir()
        (trial.checkpoint_dir / "nested" / "parent.txt").write_text(str(trial.parent_checkpoint))
    return quadratic(trial)


def dies_once(trial: pbtune.Trial) -> dict[str, float]:
    """The first attempt of member 0's first trial takes its whole process down."""
    marker = Path(os.environ["PBTUNE_TEST_MARKERS"]) / "died"
    if trial.member == 0 and trial.start_step == 0 and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        os._exit(3)
    return quadratic(trial)


@dataclass(frozen=True)
class CopyAhead(pbtune.ExploitStrategy):
    """Copies the lowest-numbered other member that is at least as far along, whenever
    there is one: which trials copy depends on the order they finish in, but some always
    do (the second trial to finish finds the first)."""

    def select(self, finished: pbtune.FrozenTrial, population: Sequence[pbtune.FrozenTrial],
               mode: Any, rng: np.random.Generator) -> pbtune.FrozenTrial:
        ahead = [t for t in population
                 if t.member != finished.member and t.end_step >= finished.end_step]
        return min(ahead, key=lambda t: t.member, default=finished)

    def to_dict(self) -> dict[str, Any]:
        return {"type": f"{Path(__file__).resolve()}:CopyAhead"}


@dataclass(frozen=True)
class KeepOwn(pbtune.ExploitStrategy):
    """Never copies, never explores: each member trains on from its own checkpoint, so a
    study takes population_size * max_steps / steps_per_trial trials in every schedule."""

    explore_on_plateau = False

    def select(self, finished: pbtune.FrozenTrial, population: Sequence[pbtune.FrozenTrial],
               mode: Any, rng: np.random.Generator) -> pbtune.FrozenTrial:
        return finished

    def to_dict(self) -> dict[str, Any]:
        return {"type": f"{Path(__file__).resolve()}:KeepOwn"}
