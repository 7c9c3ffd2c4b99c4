"""The time a worker spends between two trials, with the tell in line or in the background.

    python benchmarks/gaps.py [--trials 48] [--sleep 0.2] [--repeats 3]

One worker (in this process) on an SQLite file and in memory, population 8, trials that
sleep ``--sleep`` seconds and write a tiny checkpoint, a decision after every trial. Each
storage runs twice, interleaved: ``inline`` forces the synchronous path (the tell claims the
next trial in its own transaction; `PIPELINE_RATIO` = inf) and ``background`` forces the
pipelined one (the next trial is claimed while the checkpoint is committed, the tell runs in
a background thread; `PIPELINE_RATIO` = 0). The gap is the time from the end of one trial's
training function to the start of the next one's, measured inside the function. Prints and
writes results/gaps.{json,md}; the figures are a diagnosis of the utilization benchmark.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
import utilization

MODES = {"inline": float("inf"), "background": 0.0}


def run(storage: str, mode: str, trials: int, sleep_s: float) -> list[float]:
    import pbtune
    from pbtune.worker import _loop

    population = 8
    with tempfile.TemporaryDirectory(prefix="bench-gaps-") as tmp:
        log = Path(tmp) / "segments.log"
        os.environ[utilization.LOG_ENV] = str(log)
        utilization.SLEEP_S = sleep_s  # utilization.train: the same trial as that benchmark
        study = pbtune.create_study(
            name="gaps", storage=None if storage == "memory" else f"sqlite:///{tmp}/gaps.db",
            space={"lr": pbtune.Float(1e-4, 1e-1, log=True)}, metric="score", mode="max",
            population_size=population, steps_per_trial=1,
            max_steps=max(1, trials // population), exploit=pbtune.Truncation(fraction=0.25),
            checkpoint_root=f"{tmp}/checkpoints", seed=0,
        )
        saved = _loop.PIPELINE_RATIO
        _loop.PIPELINE_RATIO = MODES[mode]
        try:
            _loop.run_worker(study.storage, "gaps", utilization.train)
        finally:
            _loop.PIPELINE_RATIO = saved
            study.storage.dispose()
        spans = sorted((float(start), float(end))
                       for start, end, _ in (line.split() for line in log.read_text().splitlines()))
    # The first tell is always in line (the worker has not timed a tell yet): skip it.
    return [(b[0] - a[1]) * 1000 for a, b in itertools.pairwise(spans[1:])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--sleep", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    gaps: dict[str, list[float]] = {}
    for repeat in range(args.repeats):
        for storage in ("sqlite", "memory"):
            for mode in MODES:
                measured = run(storage, mode, args.trials, args.sleep)
                gaps.setdefault(f"{storage}-{mode}", []).extend(measured)
                print(f"repeat {repeat + 1}/{args.repeats} {storage:6s} {mode:10s} median gap "
                      f"{common.median(measured):6.2f} ms", flush=True)
    summary: dict[str, Any] = {
        name: {"gaps": len(values), "median_ms": common.median(values),
               "p90_ms": common.percentile(values, 90), "max_ms": max(values)}
        for name, values in gaps.items()
    }
    rows = [[name, f["gaps"], f"{f['median_ms']:.2f}", f"{f['p90_ms']:.2f}", f"{f['max_ms']:.1f}"]
            for name, f in summary.items()]
    env = common.environment()
    markdown = (
        "### Time between two trials of one worker\n\n"
        f"One worker, population 8, trials of {args.sleep} s, {args.repeats} interleaved "
        "repeats; *inline*: the tell claims the next trial in its own transaction; "
        "*background*: the next trial is claimed during the checkpoint commit and the tell "
        "runs while it trains.\n\n"
        + common.table(["storage-mode", "gaps", "median (ms)", "p90 (ms)", "max (ms)"], rows)
        + "\n\n" + common.env_line(env) + "\n"
    )
    data = {"benchmark": "gaps", "setup": vars(args), "summary": summary, "environment": env}
    common.write_results("gaps", data, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
