"""A training function for the missing-checkpoint tests, imported by worker processes.

It trains a one-number model (``value += x`` per step), saves it with the step it ended
at, and refuses a parent checkpoint that does not end where the trial starts: a trial
that warm-started from the wrong checkpoint fails instead of passing unnoticed.
"""

from __future__ import annotations

import json

import pbtune


def train(trial: pbtune.Trial) -> dict[str, float]:
    value = 0.0
    if trial.parent_checkpoint is not None:
        saved = json.loads((trial.parent_checkpoint / "state.json").read_text())
        if saved["end_step"] != trial.start_step:
            raise RuntimeError(f"parent ends at {saved['end_step']}, trial starts at "
                               f"{trial.start_step}")
        value = float(saved["value"])
    value += float(trial.params["x"]) * (trial.end_step - trial.start_step)
    state = {"value": value, "end_step": trial.end_step}
    (trial.checkpoint_dir / "state.json").write_text(json.dumps(state))
    return {"score": value}
