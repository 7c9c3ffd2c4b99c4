"""Workloads for the reliability tests and ``benchmarks/contention.py``.

Run as a script, it creates a study and runs it to its end with ``study.optimize`` (the
tests start it as a process, capture its stderr and stop or pause its workers); imported,
it gives the training functions that the worker processes load by path, and the checks
that read a finished study back against an independent log of executions.

Every execution of a training function appends one line ``trial_id pid start_ns end_ns``
to the file named by ``PBTUNE_CLAIM_LOG`` with ``O_APPEND`` (one ``write`` per line, so
lines from concurrent processes never interleave). The clock is ``CLOCK_MONOTONIC``, which
every process on one machine shares.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pbtune
from pbtune import TrialState

HERE = Path(__file__).resolve().parent
LOG_ENV = "PBTUNE_CLAIM_LOG"
DELAY_ENV = "PBTUNE_TRIAL_DELAY"
CONTROL_ENV = "PBTUNE_CONTROL_DIR"
# "DIRECTORY:N": each worker process's first trial waits (up to a minute) until N
# processes have started one, so that N workers surely hold trials at the same time.
TOGETHER_ENV = "PBTUNE_START_TOGETHER"
# A file holding a step: while it exists, member 0's trial that ends at or past that step
# waits, so the study cannot end before the test removes the file.
HOLD_ENV = "PBTUNE_HOLD_FILE"
METRIC = "score"
SPACE = {"x": pbtune.Float(0.0, 1.0)}

# What must never reach a user from a storage under contention.
ERROR_MARKERS = re.compile(
    r"database is locked|database table is locked|could not serialize|serializ|deadlock|"
    r"Traceback|Error|exception|failed",
    re.IGNORECASE,
)


# -- training functions (loaded by worker processes as ``contention_workload.py:NAME``) ---
def _append_log(trial: pbtune.Trial, start_ns: int) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    line = f"{trial.id} {os.getpid()} {start_ns} {time.monotonic_ns()}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _parent_step(trial: pbtune.Trial) -> int:
    if trial.parent_checkpoint is None:
        return 0
    return int((trial.parent_checkpoint / "step").read_text())


def _train(trial: pbtune.Trial, *, who: str = "worker") -> dict[str, float]:
    # The checkpoint holds the step count: a child that warm-starts from anything but a
    # whole checkpoint of a trial that ended where it starts fails loudly.
    reached = _parent_step(trial)
    if reached != trial.start_step:
        raise RuntimeError(
            f"trial {trial.id} starts at step {trial.start_step} but its parent's checkpoint "
            f"is at step {reached}"
        )
    (trial.checkpoint_dir / "step").write_text(str(trial.end_step))
    (trial.checkpoint_dir / "who").write_text(f"{who} {os.getpid()}")
    x = float(trial.params["x"])
    return {METRIC: trial.end_step * (1.0 - (x - 0.5) ** 2)}


def _start_together() -> None:
    """See `TOGETHER_ENV`."""
    spec = os.environ.get(TOGETHER_ENV)
    if not spec:
        return
    folder, _, count = spec.rpartition(":")
    mine = Path(folder) / str(os.getpid())
    if mine.exists():
        return  # only a process's first trial waits
    mine.touch()
    deadline = time.monotonic() + 60
    while len(os.listdir(folder)) < int(count) and time.monotonic() < deadline:
        time.sleep(0.01)


def _hold_the_end(hold: Path, trial: pbtune.Trial) -> None:
    """Wait while ``hold`` exists if this is member 0's trial to the step written in it."""
    with contextlib.suppress(OSError, ValueError):  # no hold, or gone meanwhile
        last_step = int(hold.read_text())
        while trial.member == 0 and trial.end_step >= last_step and hold.exists():
            time.sleep(0.01)


def touch(trial: pbtune.Trial) -> dict[str, float]:
    """Near-zero work: check the parent's step, write the new one, log the execution."""
    _start_together()
    if os.environ.get(HOLD_ENV):
        _hold_the_end(Path(os.environ[HOLD_ENV]), trial)
    start = time.monotonic_ns()
    delay = float(os.environ.get(DELAY_ENV, "0") or 0)
    if delay:
        time.sleep(delay)
    result = _train(trial)
    _append_log(trial, start)
    return result


def pausable(trial: pbtune.Trial) -> dict[str, float]:
    """`touch`, except that member 0's first attempt at its first segment turns zombie.

    That execution writes ``zombie`` (``trial_id pid``) into ``PBTUNE_CONTROL_DIR`` and
    stops its own process with SIGSTOP, before the heartbeat thread's first beat (so the
    pause never holds a transaction open). Once continued, it waits for a ``resume`` file
    there, then commits a checkpoint and returns a result that no other trial has. Other
    trials take a little longer while a ``hold`` file exists, and the trial that would
    take member 0 to the step written in it waits until it is gone, so the study still
    runs when the zombie comes back, however the processes are scheduled.
    """
    control = Path(os.environ[CONTROL_ENV])
    start = time.monotonic_ns()
    marker = control / "zombie"
    if trial.member == 0 and trial.start_step == 0 and not marker.exists():
        tmp = control / f"zombie.{os.getpid()}"
        tmp.write_text(f"{trial.id} {os.getpid()}")
        tmp.rename(marker)
        os.kill(os.getpid(), signal.SIGSTOP)
        while not (control / "resume").exists():
            time.sleep(0.01)
        result = _train(trial, who="zombie")
        _append_log(trial, start)
        return {**result, METRIC: -1000.0, "zombie": 1.0}
    hold = control / "hold"
    if hold.exists():
        time.sleep(0.05)
        _hold_the_end(hold, trial)
    result = _train(trial)
    _append_log(trial, start)
    return result


# -- reading the log and the study back ----------------------------------------------------
@dataclass(frozen=True)
class Execution:
    trial_id: int
    pid: int
    start_ns: int
    end_ns: int


def read_log(path: Path) -> list[Execution]:
    if not path.exists():
        return []
    executions = []
    for line in path.read_text().splitlines():
        trial_id, pid, start, end = (int(part) for part in line.split())
        executions.append(Execution(trial_id, pid, start, end))
    return executions


def double_claims(executions: Sequence[Execution]) -> list[str]:
    """Trial ids executed more than once (repeated or overlapping), described."""
    by_trial: dict[int, list[Execution]] = defaultdict(list)
    for execution in executions:
        by_trial[execution.trial_id].append(execution)
    problems = []
    for trial_id, runs in sorted(by_trial.items()):
        if len(runs) < 2:
            continue
        runs.sort(key=lambda e: e.start_ns)
        overlapping = any(a.end_ns > b.start_ns for a, b in itertools.pairwise(runs))
        pids = ", ".join(str(e.pid) for e in runs)
        kind = "overlapping" if overlapping else "repeated"
        problems.append(f"trial {trial_id} executed {len(runs)} times ({kind}; pids {pids})")
    return problems


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ERROR_MARKERS.search(line)]


def worker_pid(trial: pbtune.FrozenTrial) -> int | None:
    parts = (trial.worker or "").split(":")
    return int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None


@dataclass
class Audit:
    """What a finished contention run looks like from the database and the log."""

    trials: int = 0
    complete: int = 0
    failed: int = 0
    unfinished: int = 0
    executions: int = 0
    double_claims: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "complete": self.complete,
            "failed": self.failed,
            "unfinished": self.unfinished,
            "executions_logged": self.executions,
            "double_claims": len(self.double_claims),
            "errors_seen": len(self.errors),
            "problems": self.problems,
        }


def audit(study: pbtune.Study, log: Path, stderr: str) -> Audit:
    """Check a study that ran to its end under contention with no failure at all."""
    config = study.config
    trials = study.trials()
    executions = read_log(log)
    result = Audit(
        trials=len(trials),
        complete=sum(t.state == TrialState.COMPLETE for t in trials),
        failed=sum(t.state.is_failure for t in trials),  # FAILED or LOST
        unfinished=sum(t.state in (TrialState.QUEUED, TrialState.RUNNING) for t in trials),
        executions=len(executions),
        double_claims=double_claims(executions),
        errors=error_lines(stderr),
    )
    problems = result.problems
    problems += result.double_claims
    problems += [f"stderr: {line}" for line in result.errors]
    if study.state != pbtune.StudyState.COMPLETE:
        problems.append(f"study state is {study.state.value}: {study.error}")
    for t in trials:
        if t.state != TrialState.COMPLETE:
            problems.append(f"trial {t.id} is {t.state.value}: {(t.error or '').strip()[-300:]}")
    # Trial counts add up: each member's first trial, one decision per COMPLETE trial but
    # the member's last (exploits skip ahead, so that is fewer than max_steps allows), one
    # retry per FAILED or LOST trial.
    if result.trials != result.complete + result.failed + result.unfinished:
        problems.append(f"trial states do not add up: {result.figures()}")
    decisions = Counter(t.decision for t in trials)
    if decisions["initial"] != config.population_size:
        problems.append(f"{decisions['initial']} initial trials for "
                        f"{config.population_size} members")
    # ("explore": in place, on a plateau, which depends on the results each decision saw)
    decided = decisions["continue"] + decisions["exploit"] + decisions["explore"]
    if decided != result.complete - config.population_size:
        problems.append(f"{decided} decisions for {result.complete} COMPLETE trials")
    if decisions["retry"] != result.failed:
        problems.append(f"{decisions['retry']} retries for {result.failed} FAILED trials")
    # The log and the database tell the same story: one execution per COMPLETE trial,
    # by the process the database says claimed it.
    logged = Counter(e.trial_id for e in executions)
    by_id = {t.id: t for t in trials}
    for trial_id in sorted(set(logged) - set(by_id)):
        problems.append(f"the log names trial {trial_id}, which the study does not hold")
    for t in trials:
        if t.state == TrialState.COMPLETE and logged[t.id] != 1:
            problems.append(f"COMPLETE trial {t.id} was executed {logged[t.id]} times")
    pid_of = {e.trial_id: e.pid for e in executions}
    for t in trials:
        if t.state == TrialState.COMPLETE and t.id in pid_of and worker_pid(t) != pid_of[t.id]:
            problems.append(f"trial {t.id} ran in pid {pid_of[t.id]} but was claimed by "
                            f"{t.worker}")
    for member in range(config.population_size):
        own = [t for t in trials if t.member == member]
        latest = max(own, key=lambda t: t.number) if own else None
        if latest is None or latest.state != TrialState.COMPLETE or (
            latest.end_step != config.max_steps
        ):
            problems.append(f"member {member} did not reach max_steps: {latest}")
    for t in trials:
        parent = by_id.get(t.parent_id) if t.parent_id is not None else None
        if t.parent_id is not None and (
            parent is None
            or parent.state != TrialState.COMPLETE
            or parent.end_step != t.start_step
        ):
            problems.append(f"trial {t.id} warm-starts from {parent}, not a COMPLETE trial "
                            f"ending at step {t.start_step}")
    return result


def steady_rate(executions: Iterable[Execution]) -> float | None:
    """Trials per second between the first start and the last end in the log."""
    runs = list(executions)
    if len(runs) < 2:
        return None
    span = (max(e.end_ns for e in runs) - min(e.start_ns for e in runs)) / 1e9
    return len(runs) / span if span > 0 else None


# -- running a study as a process ----------------------------------------------------------
@dataclass
class Run:
    """A study run by this file as a script, in its own process group."""

    process: subprocess.Popen[bytes]
    stderr_path: Path
    stdout_path: Path

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """Kill the run and its workers (they share its process group)."""
        if self.process.poll() is None or _group_alive(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGCONT)  # stopped ones must die too
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def start_run(
    directory: Path,
    storage: str,
    name: str,
    *,
    env: dict[str, str] | None = None,
    **args: object,
) -> Run:
    """Start ``python contention_workload.py`` on ``storage``; its output goes to files in
    ``directory`` (a pipe could fill up and stall 16 workers)."""
    directory.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--storage", storage,
               "--name", name, "--checkpoint-root", str(directory / "checkpoints")]
    for key, value in args.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    stdout_path, stderr_path = directory / f"{name}.stdout", directory / f"{name}.stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(command, env={**os.environ, **(env or {})},
                                   stdout=out, stderr=err, start_new_session=True)
    return Run(process, stderr_path, stdout_path)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


# -- the runner script -----------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--checkpoint-root", required=True)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--steps-per-trial", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--heartbeat-timeout", type=float, default=60.0)
    parser.add_argument("--entry", default="touch")
    args = parser.parse_args(argv)
    study = pbtune.create_study(
        args.name,
        storage=args.storage,
        space=SPACE,
        metric=METRIC,
        mode="max",
        population_size=args.population,
        steps_per_trial=args.steps_per_trial,
        max_steps=args.max_steps,
        checkpoint_root=args.checkpoint_root,
        heartbeat_timeout=args.heartbeat_timeout,
        load_if_exists=True,
    )
    started = time.perf_counter()
    study.optimize(f"{Path(__file__).resolve()}:{args.entry}", workers=args.workers,
                   show_progress=False)
    print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)


if __name__ == "__main__":
    main()
