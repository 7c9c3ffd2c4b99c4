"""Small real studies of several objectives and constraints, for the tests of the views.

A member's model is a number ``x`` that grows by ``lr`` per step; a wide one (``width``)
is more accurate but slower and uses more memory, so accuracy and latency trade off and
the widest ones (memory above 2400) break the constraint. ``Lagging`` stops members that
stay at the bottom, so the studies also have restarts. One worker: the same trials on
every run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pbtune

MEMORY_LIMIT = 2400.0
OBJECTIVES: dict[int, dict[str, str]] = {
    2: {"accuracy": "max", "latency_ms": "min"},
    3: {"accuracy": "max", "latency_ms": "min", "memory_mb": "min"},
}
SPACE = {"lr": pbtune.Float(0.01, 1.0, log=True), "width": pbtune.Int(10, 100)}


def train(trial: pbtune.Trial) -> dict[str, float]:
    x = 0.0
    if trial.parent_checkpoint is not None:
        x = json.loads((trial.parent_checkpoint / "x.json").read_text())["x"]
    x += trial.params["lr"] * (trial.end_step - trial.start_step)
    (trial.checkpoint_dir / "x.json").write_text(json.dumps({"x": x}))
    width = trial.params["width"]
    return {"accuracy": x * width / 100, "latency_ms": width * (1 + x),
            "memory_mb": width * 30.0}


def make(storage: pbtune.Storage | str | None, name: str, checkpoints: Path, *,
         objectives: int | None = 2, seed: int = 0, max_steps: int = 12) -> pbtune.Study:
    """A finished study of ``objectives`` objectives (None: accuracy alone) with the
    memory constraint."""
    chosen: Mapping[str, str] | None = OBJECTIVES[objectives] if objectives else None
    study = pbtune.create_study(
        name, storage=storage, space=SPACE, population_size=6, steps_per_trial=2,
        max_steps=max_steps, checkpoint_root=checkpoints, seed=seed,
        **({"objectives": dict(chosen)} if chosen else {"metric": "accuracy"}),
        constraints={"memory_mb": {"max": MEMORY_LIMIT}},
        early_stop=pbtune.Lagging(generations=2), load_if_exists=True,
    )
    study.optimize(train, workers=1, backend="thread", show_progress=False)
    return study


def infeasible(trial: pbtune.FrozenTrial) -> bool:
    return (trial.metrics or {}).get("memory_mb", 0.0) > MEMORY_LIMIT
