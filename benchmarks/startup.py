"""Worker start-up: how long a run takes until its worker processes train.

    python benchmarks/startup.py --base ../base-checkout [--repeats 7] [--workers 2]

In a fresh Python process that has imported pbtune and created a study (SQLite file,
population = workers, one trial each), ``optimize(train, workers=N)`` is called, and each
trial's training function notes when it began. Start-up = from the call to the moment a
worker's first trial begins: starting the process (spawn or fork), its imports, opening
the storage and its first ask. Figures: the first and the last worker to begin (median
over repeats). ``--base``: another checkout's pbtune in the same interleaved rounds;
each run in a process of its own, so a run never finds a worker server that an earlier
one started (what a script's first run pays). Writes results/startup.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

LOG_ENV = "PBTUNE_BENCH_STARTUP_LOG"


def train(trial: Any) -> dict[str, float]:
    began = time.time()
    with open(os.environ[LOG_ENV], "a", encoding="utf-8") as log:
        log.write(f"{began:.6f}\n")
    (trial.checkpoint_dir / "state").write_text("0")
    return {"score": 0.0}


def child(workers: int) -> None:
    import pbtune
    import pbtune.study  # the API loads on first use: before the clock

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        os.environ[LOG_ENV] = f"{tmp}/starts.log"
        study = pbtune.create_study(
            name="startup", storage=f"sqlite:///{tmp}/startup.db",
            space={"lr": pbtune.Float(1e-4, 1e-1, log=True)}, metric="score", mode="max",
            population_size=workers, steps_per_trial=1, max_steps=1,
            checkpoint_root=f"{tmp}/checkpoints", seed=0,
        )
        called = time.time()
        study.optimize(train, workers=workers, show_progress=False)
        wall = time.time() - called
        starts = sorted(float(line) - called
                        for line in Path(f"{tmp}/starts.log").read_text().split())
        study.storage.dispose()
    print(json.dumps({"first_s": starts[0], "last_s": starts[-1], "wall_s": wall}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path,
                        help="another checkout (git worktree add ../base main); required")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.workers)
        return 0
    if args.base is None:
        parser.error("--base is required")
    trees = {"base": args.base.resolve(), "new": common.ROOT}
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in trees}
    for repeat in range(args.repeats):  # interleaved: a noisy machine's drift is shared
        for label, tree in trees.items():
            result = common.run_json([__file__, "--child", "--workers", str(args.workers)],
                                     timeout=600, env=common.tree_env(tree))
            runs[label].append(result)
            print(f"repeat {repeat + 1}/{args.repeats} {label:4s} first worker trains after "
                  f"{result['first_s']:.3f} s, last {result['last_s']:.3f} s; run "
                  f"{result['wall_s']:.3f} s", flush=True)
    keys = ("first_s", "last_s", "wall_s")
    summary = {label: {k: common.median([r[k] for r in results]) for k in keys}
               for label, results in runs.items()}
    rows = [[name, f"{summary['base'][k]:.3f}", f"{summary['new'][k]:.3f}",
             f"{summary['new'][k] / summary['base'][k]:.3f}"]
            for name, k in (("first worker begins training (s)", "first_s"),
                            ("last worker begins training (s)", "last_s"),
                            ("the whole run, one trial each (s)", "wall_s"))]
    command = " ".join(["python", "benchmarks/startup.py", *sys.argv[1:]])
    env = common.environment()
    markdown = "\n".join([
        "### Worker start-up", "",
        f"`{command}`: {args.workers} worker processes, a study of {args.workers} members "
        f"with one trial each on an SQLite file; from the `optimize` call until a worker's "
        f"first trial begins (process start, imports, storage, first ask); median of "
        f"{args.repeats} interleaved runs, each in a fresh process, against base "
        f"{common.commit_of(args.base)}.", "",
        common.table(["figure (median)", "base", "new", "new / base"], rows), "",
        common.env_line(env),
    ])
    common.write_results("startup", {"benchmark": "startup", "command": command,
                                     "runs": runs, "summary": summary,
                                     "environment": env}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
