"""Chaos soak: run pbtune studies while injecting faults at random, then check invariants.

Faults, at exponentially distributed moments:

- ``kill_worker``: SIGKILL the worker process of a RUNNING trial (its pid is in the
  trial's ``worker`` field, ``host:pid:tag``);
- ``kill_controller``: SIGKILL the whole optimize process tree, then run the same command
  again (the recovery time is from that restart to the first new COMPLETE trial);
- ``stop_worker``: SIGSTOP the worker of a RUNNING trial past the heartbeat timeout, then
  SIGCONT it (its trial is failed as lost meanwhile and its late result must be refused).

Each study runs to its end (faults stop when ``--duration`` is spent; the study then
finishes without them). The invariants come from the database and from the log that the
training function keeps on its own (``tests/reliability/workload.py``):

- ``trials_lost`` (must be 0): a COMPLETE trial seen during the run that is later missing
  or changed, or a member that did not reach ``max_steps``;
- ``double_claims`` (must be 0): a trial id that training code started more than once
  (the log holds each execution's pid and start/end times);
- ``completed_twice``, ``bad_parents``, ``checkpoint_problems``, ``other_violations``:
  a trial id that finished training twice, a child that warm-started from a missing,
  partial or wrong checkpoint, a committed checkpoint that was missing or partial, and
  anything else ``workload.study_problems`` finds (a failure that was not a loss, a
  failure without its one retry, a child of a parent that was not COMPLETE).

Usage::

    python benchmarks/chaos.py --storage sqlite --duration 120 --out chaos-sqlite.json
    python benchmarks/chaos.py --storage postgresql://user@host:5432/db --out chaos-pg.json

PostgreSQL runs in a fresh schema of its own, dropped at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from pbtune import FrozenTrial, Storage, StudyState, TrialState  # noqa: E402
from reliability import workload  # noqa: E402
from reliability.workload import CheckpointAudit, Run  # noqa: E402

FAULTS = ("kill_worker", "kill_controller", "stop_worker")
WEIGHTS = (0.45, 0.3, 0.25)
STUDY_TIMEOUT_S = 600.0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", required=True,
                        help="'sqlite' (a file in the work directory) or a postgresql:// URL")
    parser.add_argument("--duration", type=float, default=120.0,
                        help="seconds of fault injection (default 120)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="chaos.json", help="where to write the JSON results")
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=16)
    parser.add_argument("--steps-per-trial", type=int, default=1)
    parser.add_argument("--delay", default="0.05,0.2", help="seconds per trial, or 'a,b'")
    parser.add_argument("--heartbeat-timeout", type=float, default=2.0)
    parser.add_argument("--max-retries", type=int, default=20,
                        help="per member, consecutive; random kills can hit a member "
                             "several times in a row")
    parser.add_argument("--fault-interval", type=float, default=1.5,
                        help="mean seconds between faults")
    parser.add_argument("--workdir", default=None, help="default: a temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the files and the schema")
    return parser.parse_args()


class Soak:
    def __init__(self, args: argparse.Namespace, url: str, workdir: Path) -> None:
        self.args = args
        self.url = url
        self.workdir = workdir
        self.rng = random.Random(args.seed)
        self.storage = Storage(url)
        self.faults = dict.fromkeys(FAULTS, 0)
        self.recoveries: list[float] = []
        self.unmeasured = 0  # controller kills after which no trial was left to complete
        self.early_exits = 0
        self.studies: list[dict[str, Any]] = []
        self.injecting_until = 0.0

    # -- one study ---------------------------------------------------------------------------
    def run_study(self, index: int) -> dict[str, Any]:
        name = f"chaos-{self.args.seed}-{index}"
        run = Run(self.url, name, self.workdir / "ckpt", self.workdir / f"{name}.log",
                  self.workdir / f"{name}.out",
                  options=dict(workers=self.args.workers, population=self.args.population,
                               max_steps=self.args.max_steps,
                               steps_per_trial=self.args.steps_per_trial,
                               delay=self.args.delay, seed=self.args.seed + index,
                               heartbeat_timeout=self.args.heartbeat_timeout,
                               max_retries=self.args.max_retries))
        seen: dict[int, FrozenTrial] = {}  # every COMPLETE trial ever observed
        stopped: dict[int, float] = {}  # pid -> when to SIGCONT it
        restarted_at: float | None = None
        exits: list[str] = []  # runs that ended before the study did, or failed
        started = time.time()
        run.start()
        try:
            study_id = workload.wait_for(workload.find_study(self.storage, name), 120,
                                         "the study")
            audit = CheckpointAudit(self.storage, study_id, name,
                                    workload.study_dir(self.storage, name), run.log)
            next_fault = time.time() + self.rng.expovariate(1 / self.args.fault_interval)
            next_audit = 0.0
            while True:
                now = time.time()
                if now - started > STUDY_TIMEOUT_S:
                    raise RuntimeError(f"study {name} did not finish:\n{run.tail()}")
                for pid, when in list(stopped.items()):
                    if now >= when or now >= self.injecting_until:
                        if run.owns(pid):
                            os.kill(pid, signal.SIGCONT)
                        del stopped[pid]
                trials = self.storage.get_trials(study_id)
                for t in trials:
                    if t.state == TrialState.COMPLETE:
                        seen.setdefault(t.id, t)
                if restarted_at is not None:
                    first = min((t.finished_at or 0.0 for t in trials
                                 if t.state == TrialState.COMPLETE
                                 and (t.finished_at or 0.0) > restarted_at), default=None)
                    if first is not None:
                        self.recoveries.append(first - restarted_at)
                        restarted_at = None
                if now >= next_audit:
                    audit.poll()
                    next_audit = now + 0.3
                assert run.process is not None
                if run.process.poll() is not None:
                    if self.storage.get_study(name).state == StudyState.COMPLETE:
                        if run.process.returncode != 0:
                            exits.append(f"the last run exited {run.process.returncode}")
                        break
                    # The run ended before the study did (it should not): go on.
                    self.early_exits += 1
                    state = self.storage.get_study(name).state.value
                    exits.append(f"a run ended early, the study {state}:\n{run.tail(8)}")
                    if len(exits) > 5:
                        break
                    stopped.clear()
                    run.start()
                    continue
                if now >= next_fault and now < self.injecting_until:
                    kind = self.rng.choices(FAULTS, WEIGHTS)[0]
                    running = [t for t in trials if t.state == TrialState.RUNNING]
                    if kind == "kill_controller" and restarted_at is None:
                        run.kill_tree()
                        stopped.clear()
                        for t in self.storage.get_trials(study_id, [TrialState.COMPLETE]):
                            seen.setdefault(t.id, t)
                        run.start()
                        restarted_at = time.time()
                        self.faults[kind] += 1
                    elif kind in ("kill_worker", "stop_worker") and running:
                        victim = self.rng.choice(running)
                        pid = workload.worker_pid(victim)
                        if pid is not None and run.owns(pid) and pid not in stopped:
                            if kind == "kill_worker":
                                os.kill(pid, signal.SIGKILL)
                            elif not stopped:
                                os.kill(pid, signal.SIGSTOP)
                                stopped[pid] = now + self.args.heartbeat_timeout + 2.0
                            else:
                                continue  # one stopped worker at a time
                            self.faults[kind] += 1
                    else:
                        time.sleep(0.02)
                        continue  # nothing to hit right now: try again shortly
                    next_fault = now + self.rng.expovariate(1 / self.args.fault_interval)
                time.sleep(0.1)
            if restarted_at is not None:
                # Killed as its last trials finished: the restart had nothing left to run.
                self.unmeasured += 1
            audit.poll()
            audit.check_final_dirs()
        finally:
            for pid in stopped:
                if run.owns(pid):
                    os.kill(pid, signal.SIGCONT)
            run.stop()
        return self.check(name, study_id, run, seen, audit, exits, time.time() - started)

    def check(self, name: str, study_id: int, run: Run, seen: dict[int, FrozenTrial],
              audit: CheckpointAudit, exits: list[str], wall: float) -> dict[str, Any]:
        final = {t.id: t for t in self.storage.get_trials(study_id)}
        events = workload.read_log(run.log)
        forgotten = []
        for trial_id, trial in seen.items():
            now = final.get(trial_id)
            same = now is not None and (now.state, now.metrics, now.fitness, now.end_step,
                                        now.finished_at, now.worker) == (
                trial.state, trial.metrics, trial.fitness, trial.end_step,
                trial.finished_at, trial.worker)
            if not same:
                forgotten.append(f"COMPLETE trial {trial.number} changed or vanished")
        problems = workload.study_problems(self.storage, name, events)
        unreached = [p for p in problems if "did not reach max_steps" in p]
        others = [p for p in problems if p not in unreached]
        from_log = workload.log_problems(events, name, final.values())
        return {
            "name": name,
            "wall_s": round(wall, 2),
            "trial_records": len(final),
            "executions": sum(1 for e in events if e.get("event") == "start"),
            "completed": sum(t.state == TrialState.COMPLETE for t in final.values()),
            "lost_and_retried": len(workload.lost_trials(final.values())),
            "trials_lost": forgotten + unreached,
            "double_claims": from_log["double_claims"],
            "completed_twice": from_log["completed_twice"],
            "bad_parents": from_log["bad_parents"],
            "checkpoint_problems": audit.problems,
            "other_violations": others + exits,
        }

    # -- the soak ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        began = time.time()
        self.injecting_until = began + self.args.duration
        index = 0
        while time.time() < self.injecting_until:
            self.studies.append(self.run_study(index))
            index += 1
            done = self.studies[-1]
            print(f"study {done['name']}: {done['completed']} complete, "
                  f"{done['lost_and_retried']} lost and retried, {done['wall_s']}s",
                  file=sys.stderr)
        return self.summary(time.time() - began)

    def summary(self, wall: float) -> dict[str, Any]:
        def total(key: str) -> int:
            return sum(len(s[key]) if isinstance(s[key], list) else s[key]
                       for s in self.studies)

        recoveries = sorted(self.recoveries)
        violations = [f"{s['name']}: {p}" for s in self.studies
                      for key in ("trials_lost", "double_claims", "completed_twice",
                                  "bad_parents", "checkpoint_problems", "other_violations")
                      for p in s[key]]
        return {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
            "storage": self.storage.url.split(":", 1)[0] if self.storage.url else "memory",
            "duration_s": self.args.duration,
            "workers": self.args.workers,
            "seed": self.args.seed,
            "studies": len(self.studies),
            "trials_run": total("executions"),
            "trial_records": total("trial_records"),
            "trials_completed": total("completed"),
            "trials_lost_and_retried": total("lost_and_retried"),
            "faults": dict(self.faults),
            "faults_total": sum(self.faults.values()),
            "trials_lost": total("trials_lost"),
            "double_claims": total("double_claims"),
            "completed_twice": total("completed_twice"),
            "bad_parents": total("bad_parents"),
            "checkpoint_problems": total("checkpoint_problems"),
            "other_violations": total("other_violations"),
            "early_exits": self.early_exits,
            "recovery_s": {
                "count": len(recoveries),
                "median": round(statistics.median(recoveries), 3) if recoveries else None,
                "max": round(max(recoveries), 3) if recoveries else None,
                "restarts_with_nothing_left_to_run": self.unmeasured,
            },
            "violations": violations[:50],
            "wall_s": round(wall, 1),
        }


def main() -> int:
    args = _arguments()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="pbtune-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    schema = None
    if args.storage == "sqlite":
        url = f"sqlite:///{workdir / 'chaos.db'}"
    elif args.storage.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        schema = f"pbtune_chaos_{uuid.uuid4().hex[:10]}"
        url = workload.postgres_schema(args.storage, schema)
    else:
        raise SystemExit(f"--storage must be 'sqlite' or a postgresql:// URL, not {args.storage!r}")
    soak = Soak(args, url, workdir)
    try:
        result = soak.run()
    finally:
        soak.storage.dispose()
        if not args.keep:
            if schema is not None:
                workload.drop_postgres_schema(args.storage, schema)
            shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    Path(args.out).write_text(text + "\n")
    bad = result["trials_lost"] + result["double_claims"] + result["completed_twice"] \
        + result["bad_parents"] + result["checkpoint_problems"] + result["other_violations"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
