"""A worker on a machine whose clock is off: ``time.time()`` in this process runs
``PBTUNE_TEST_CLOCK_SKEW`` seconds ahead (negative: behind) of the real one.

    python skewed_worker.py STORAGE_URL STUDY_NAME MARKER_FILE

It joins the study as one worker (`Study.join`, the loop `pbtune worker` runs, with its
heartbeat thread); its train function writes "<trial id> <pid>" to MARKER_FILE and then
holds the trial until the process is killed. The skew is set before pbtune is imported,
so every clock pbtune reads through ``time.time`` in this process is off by it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

SKEW_ENV = "PBTUNE_TEST_CLOCK_SKEW"
_real_time = time.time


def _skewed_time() -> float:
    return _real_time() + float(os.environ.get(SKEW_ENV, "0") or 0)


time.time = _skewed_time

import pbtune  # noqa: E402  (after the clock is skewed)


def hold(trial: pbtune.Trial) -> dict[str, float]:
    """Say which trial this is, then train for ever (until killed)."""
    marker = Path(os.environ["PBTUNE_TEST_MARKER"])
    marker.with_suffix(".tmp").write_text(f"{trial.id} {os.getpid()}")
    marker.with_suffix(".tmp").replace(marker)
    while True:
        time.sleep(0.1)


def main() -> None:
    url, name, marker = sys.argv[1:4]
    os.environ["PBTUNE_TEST_MARKER"] = marker
    pbtune.load_study(name, storage=url).join(hold, workers=1, max_trials=1)


if __name__ == "__main__":
    main()
