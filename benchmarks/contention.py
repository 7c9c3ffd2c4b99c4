"""Contention benchmark: N worker processes on one study of near-zero-work trials.

    python benchmarks/contention.py --storage sqlite --workers 16 --duration 30
    python benchmarks/contention.py --storage postgresql://postgres@127.0.0.1:5432/bench

(On PostgreSQL, give it a database of its own: the test suites drop pbtune's tables.)

It runs a study (``study.optimize(..., workers=N)`` in a separate process, as a user would)
in which the workers contend for at least ``--duration`` seconds: a short first study
measures the rate, and the next is sized from it (a further one if that fell short).
Every study is then checked against an independent log of executions: no trial claimed
twice, no result lost, no error on stderr, no FAILED trial. The figures are printed as
JSON (and written to ``--output``); the exit code is 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

import contention_workload as workload  # noqa: E402

import pbtune  # noqa: E402

FIRST_MAX_STEPS = 10  # the first study measures the rate
MARGIN = 1.3
MAX_STUDIES = 5


def run_study(storage: str, directory: Path, workers: int, population: int,
              max_steps: int) -> dict[str, Any]:
    name = f"contention-{uuid.uuid4().hex[:8]}"
    log = directory / f"{name}.log"
    started = time.perf_counter()
    run = workload.start_run(directory, storage, name, env={workload.LOG_ENV: str(log)},
                             workers=workers, population=population, steps_per_trial=1,
                             max_steps=max_steps)
    try:
        code = run.wait(timeout=3600)
    finally:
        run.kill()
    wall = time.perf_counter() - started
    stderr = run.stderr
    executions = workload.read_log(log)
    span = ((max(e.end_ns for e in executions) - min(e.start_ns for e in executions)) / 1e9
            if executions else 0.0)
    figures: dict[str, Any] = {
        "study": name,
        "max_steps": max_steps,
        "wall_s": wall,
        "contention_s": span,
        "transient_retries": stderr.count("retrying in"),
    }
    try:
        study = pbtune.load_study(name, storage=storage)
        checked = workload.audit(study, log, stderr)
        figures["distinct_workers"] = len({t.worker for t in study.trials()})
    except pbtune.PbtuneError as error:  # e.g. someone dropped the tables meanwhile
        checked = workload.Audit(executions=len(executions), errors=workload.error_lines(stderr),
                                 problems=[f"cannot read the study back: {error}"])
        figures["distinct_workers"] = 0
    figures.update(checked.figures())
    if code != 0:
        figures["problems"].insert(0, f"the run exited with {code}: {stderr[-2000:]}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="sqlite",
                        help="a storage URL, or 'sqlite' for a new file in a temporary directory")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds of contention to reach, at least")
    parser.add_argument("--population", type=int, default=None,
                        help="members per study (default: twice the workers)")
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    population = args.population or 2 * args.workers

    with tempfile.TemporaryDirectory(prefix="pbtune-contention-") as tmp:
        directory = Path(tmp)
        storage = (f"sqlite:///{directory / 'study.db'}" if args.storage == "sqlite"
                   else args.storage)
        rounds: list[dict[str, Any]] = []
        max_steps = FIRST_MAX_STEPS
        while True:
            figures = run_study(storage, directory, args.workers, population, max_steps)
            rounds.append(figures)
            print(f"study {len(rounds)}: {figures['complete']} trials in "
                  f"{figures['contention_s']:.1f}s of contention", file=sys.stderr, flush=True)
            longest = max(r["contention_s"] for r in rounds)
            if (longest >= args.duration or figures["problems"] or figures["complete"] == 0
                    or len(rounds) >= MAX_STUDIES):
                break
            # Size the next study to contend for the whole duration by itself. Exploits
            # skip steps, so scale by the trials one step of max_steps cost this time.
            rate = figures["complete"] / max(figures["contention_s"], 1e-3)
            trials_per_step = figures["complete"] / max_steps
            wanted = rate * args.duration * MARGIN
            max_steps = max(FIRST_MAX_STEPS, math.ceil(wanted / trials_per_step))

    contention_s = sum(r["contention_s"] for r in rounds)
    complete = sum(r["complete"] for r in rounds)
    problems = [p for r in rounds for p in r["problems"]]
    shown_storage = ("sqlite (temporary file)" if args.storage == "sqlite"
                     else _redact(args.storage))
    result = {
        "storage": shown_storage,
        "workers": args.workers,
        "population": population,
        "duration_target_s": args.duration,
        "studies": len(rounds),
        "longest_study_contention_s": round(max(r["contention_s"] for r in rounds), 2),
        "contention_s": round(contention_s, 2),
        "wall_s": round(sum(r["wall_s"] for r in rounds), 2),
        "trials_complete": complete,
        "trials_per_s": round(complete / contention_s, 1) if contention_s else None,
        "trials_per_s_wall": round(complete / sum(r["wall_s"] for r in rounds), 1),
        "errors_seen": sum(r["errors_seen"] for r in rounds),
        "transient_retries": sum(r["transient_retries"] for r in rounds),
        "failed_trials": sum(r["failed"] for r in rounds),
        "double_claims": sum(r["double_claims"] for r in rounds),
        # Executions whose result is not recorded, and trials left QUEUED or RUNNING.
        "lost_results": sum(r["executions_logged"] - r["complete"] + r["unfinished"]
                            for r in rounds),
        "distinct_workers": max(r["distinct_workers"] for r in rounds),
        "ok": not problems,
        "problems": problems[:50],
        "per_study": [
            {key: (round(value, 2) if isinstance(value, float) else value)
             for key, value in r.items() if key != "problems"}
            for r in rounds
        ],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")
    return 0 if result["ok"] else 1


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"


if __name__ == "__main__":
    sys.exit(main())
