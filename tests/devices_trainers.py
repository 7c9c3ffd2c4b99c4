"""Training functions for tests/test_devices.py; worker processes import them by path.

With ``PBTUNE_TEST_DEVICES`` set to a folder, every process that imports this module
writes there the ``CUDA_VISIBLE_DEVICES`` it started with (``<pid>.start``), so the tests
see that the variable is set before the training code is imported, also for a worker
that never gets a trial; each trial appends what it sees to ``<pid>.train`` (or
``<pid>.evaluate``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pbtune

UNSET = "<unset>"
LOG = os.environ.get("PBTUNE_TEST_DEVICES")
VICTIM_WAIT_S = 60.0


def visible() -> str:
    return os.environ.get("CUDA_VISIBLE_DEVICES", UNSET)


def _append(kind: str) -> None:
    assert LOG is not None, "set PBTUNE_TEST_DEVICES to a folder"
    with open(Path(LOG) / f"{os.getpid()}.{kind}", "a", encoding="utf-8") as log:
        log.write(visible() + "\n")


if LOG:
    (Path(LOG) / f"{os.getpid()}.start").write_text(visible(), encoding="utf-8")


def record(trial: pbtune.Trial) -> dict[str, float]:
    _append("train")
    (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
    return {"score": trial.params["x"] * trial.end_step}


def dies_once(trial: pbtune.Trial) -> dict[str, float]:
    """The first trial of the process that sees ``PBTUNE_TEST_VICTIM`` takes that process
    down (the marker says which it was). Trials elsewhere wait for that, so it comes
    whatever the schedule: the victim finds a member's first trial to claim."""
    assert LOG is not None
    marker = Path(LOG) / "died"
    if not marker.exists():
        if visible() == os.environ["PBTUNE_TEST_VICTIM"]:
            _append("train")
            marker.write_text(str(os.getpid()))
            os._exit(3)
        waited = time.monotonic()
        while not marker.exists():
            if time.monotonic() - waited > VICTIM_WAIT_S:
                raise RuntimeError("the victim's trial never came")
            time.sleep(0.01)
    return record(trial)


def evaluate(trial: pbtune.Trial) -> dict[str, float]:
    _append("evaluate")
    return {"score": float((trial.checkpoint_dir / "state").read_text())}
