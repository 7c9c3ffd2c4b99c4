"""The reliability workload: training functions that keep an independent log, a study
runner to start as a subprocess (``python workload.py --storage URL ...``), and the checks
that the kill tests and ``benchmarks/chaos.py`` make against the database and the log.

The training function ``steady`` trains a one-number model (``value += x`` per step) and:

- appends JSON lines to the log named by ``$PBTUNE_REL_LOG`` (one ``write`` each, with
  ``O_APPEND``, so the lines of concurrent workers never mix): ``start`` (trial id and
  number, member, steps, pid, time), ``end`` (pid, time, size and SHA-256 of each file it
  wrote) and ``bad_parent`` (the parent checkpoint was missing, partial or not the one its
  parent wrote);
- writes ``state.json`` and, with ``$PBTUNE_REL_BLOB_BYTES`` > 0, a ``blob.bin`` of that
  many bytes in ``$PBTUNE_REL_BLOB_CHUNKS`` slow chunks (for torn-write tests);
- sleeps ``$PBTUNE_REL_DELAY`` seconds in all (``a,b``: uniform in [a, b]).

The log is written by the training code, not by pbtune, so it is evidence the database
cannot vouch for itself: which trial ids ran, where, when and how often.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pbtune
from pbtune import FrozenTrial, Storage, TrialState
from pbtune.worker._process import pid_alive

HERE = Path(__file__).resolve()
LOG_ENV = "PBTUNE_REL_LOG"
DELAY_ENV = "PBTUNE_REL_DELAY"
BLOB_BYTES_ENV = "PBTUNE_REL_BLOB_BYTES"
BLOB_CHUNKS_ENV = "PBTUNE_REL_BLOB_CHUNKS"
STATE = "state.json"
BLOB = "blob.bin"
METRIC = "score"


# -- the independent log ------------------------------------------------------------------
def append(path: str | Path, event: dict[str, Any]) -> None:
    """Append one JSON line in a single ``write`` (atomic among appenders on Linux)."""
    line = (json.dumps(event, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Every complete line of the log (a line being written right now is skipped)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    events = []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def _digest(path: Path) -> tuple[int, str]:
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    return _digest(path)[1]


def blob_block(study: str, number: int) -> bytes:
    """The 4 KiB block that ``blob.bin`` of trial ``number`` repeats: its content is known."""
    seed = hashlib.sha256(f"{study}:{number}".encode()).digest()
    return (seed * 128)[:4096]


def blob_sha256(study: str, number: int, size: int) -> str:
    block = blob_block(study, number)
    digest = hashlib.sha256()
    for offset in range(0, size, len(block)):
        digest.update(block[: min(len(block), size - offset)])
    return digest.hexdigest()


# -- the training function ----------------------------------------------------------------
def _delay() -> float:
    text = os.environ.get(DELAY_ENV, "0").strip() or "0"
    if "," in text:
        low, high = (float(x) for x in text.split(",", 1))
        return random.uniform(low, high)
    return float(text)


def _end_record(log: list[dict[str, Any]], study: str, number: int) -> dict[str, Any] | None:
    for event in log:
        if event.get("event") == "end" and event["study"] == study and event["number"] == number:
            return event
    return None


def parent_problem(trial: pbtune.Trial, log_path: str) -> str | None:
    """What is wrong with ``trial.parent_checkpoint``, or None if it is the whole, committed
    checkpoint its parent wrote (the files and hashes that the parent logged)."""
    parent = trial.parent_checkpoint
    if parent is None:
        return "no parent checkpoint for a later generation" if trial.generation > 0 else None
    if trial.generation == 0:
        return f"a first-generation trial got parent checkpoint {parent}"
    if not parent.is_dir():
        return f"parent checkpoint {parent} does not exist"
    if ".staging" in parent.parts or not parent.name.startswith("trial-"):
        return f"parent checkpoint {parent} is not a committed directory"
    try:
        number = int(parent.name.split("-")[1])
        state = json.loads((parent / STATE).read_text())
    except (OSError, ValueError, IndexError) as error:
        return f"parent checkpoint {parent} cannot be read: {error!r}"
    if state.get("number") != number or state.get("end_step") != trial.start_step:
        return f"parent checkpoint {parent} holds {state}, not number {number} at step " \
               f"{trial.start_step}"
    record = _end_record(read_log(log_path), trial.study_name, number)
    if record is None:
        return f"the parent trial {number} never logged the end of its training"
    for name, (size, sha) in record["files"].items():
        try:
            got = _digest(parent / name)
        except OSError as error:
            return f"parent file {parent / name} cannot be read: {error!r}"
        if got != (size, sha):
            return f"parent file {parent / name} is {got}, its trial wrote {(size, sha)}"
    return None


def steady(trial: pbtune.Trial) -> dict[str, float]:
    """Near-zero work with a checkable checkpoint; see the module docstring."""
    log_path = os.environ[LOG_ENV]
    common = {"study": trial.study_name, "id": trial.id, "number": trial.number,
              "pid": os.getpid()}
    append(log_path, {**common, "event": "start", "t": time.time(), "member": trial.member,
                      "start_step": trial.start_step, "end_step": trial.end_step})
    problem = parent_problem(trial, log_path)
    if problem is not None:
        append(log_path, {**common, "event": "bad_parent", "t": time.time(), "why": problem})
    value = 0.0
    if trial.parent_checkpoint is not None and problem is None:
        value = float(json.loads((trial.parent_checkpoint / STATE).read_text())["value"])
    steps = trial.end_step - trial.start_step
    pause = _delay() / max(steps, 1)
    for _ in range(steps):
        value += float(trial.params["x"])
        if pause:
            time.sleep(pause)
    files: dict[str, tuple[int, str]] = {}
    size = int(os.environ.get(BLOB_BYTES_ENV, "0") or 0)
    if size > 0:
        chunks = max(1, int(os.environ.get(BLOB_CHUNKS_ENV, "1") or 1))
        block = blob_block(trial.study_name, trial.number)
        append(log_path, {**common, "event": "writing", "t": time.time(), "size": size})
        path = trial.checkpoint_dir / BLOB
        with path.open("wb") as out:
            written = 0
            for index in range(chunks):
                target = size * (index + 1) // chunks
                while written < target:
                    piece = block[: min(len(block), target - written)]
                    out.write(piece)
                    written += len(piece)
                out.flush()
                time.sleep(0.01)
        files[BLOB] = _digest(path)
    state = {"number": trial.number, "id": trial.id, "end_step": trial.end_step, "value": value}
    (trial.checkpoint_dir / STATE).write_text(json.dumps(state))
    files[STATE] = _digest(trial.checkpoint_dir / STATE)
    append(log_path, {**common, "event": "end", "t": time.time(), "files": files,
                      "steps": steps})
    return {METRIC: value}


# -- the runner ---------------------------------------------------------------------------
def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="run one reliability study to its end")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--name", default="reliability")
    parser.add_argument("--checkpoint-root", required=True)
    parser.add_argument("--log", required=True, help="the independent append-only log")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--population", type=int, default=3)
    parser.add_argument("--steps-per-trial", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=6)
    parser.add_argument("--heartbeat-timeout", type=float, default=60.0)
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--delay", default="0.1", help="seconds per trial, or 'a,b'")
    parser.add_argument("--blob-bytes", type=int, default=0)
    parser.add_argument("--blob-chunks", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    # Worker processes inherit these.
    os.environ[LOG_ENV] = str(Path(args.log).resolve())
    os.environ[DELAY_ENV] = args.delay
    os.environ[BLOB_BYTES_ENV] = str(args.blob_bytes)
    os.environ[BLOB_CHUNKS_ENV] = str(args.blob_chunks)
    study = pbtune.create_study(
        args.name,
        storage=args.storage,
        space={"x": pbtune.Float(0.0, 1.0)},
        metric=METRIC,
        mode="max",
        population_size=args.population,
        steps_per_trial=args.steps_per_trial,
        max_steps=args.max_steps,
        checkpoint_root=args.checkpoint_root,
        heartbeat_timeout=args.heartbeat_timeout,
        max_retries=args.max_retries,
        seed=args.seed,
        load_if_exists=True,
    )
    study.optimize(f"{HERE}:steady", workers=args.workers, show_progress=False)
    print("state", study.state.value, flush=True)


@dataclass
class Run:
    """One study run as a process group of its own (the controller and its workers)."""

    storage: str
    name: str
    checkpoint_root: Path
    log: Path
    output: Path
    options: dict[str, Any] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        command = [sys.executable, str(HERE), "--storage", self.storage, "--name", self.name,
                   "--checkpoint-root", str(self.checkpoint_root), "--log", str(self.log)]
        for key, value in self.options.items():
            command += [f"--{key.replace('_', '-')}", str(value)]
        return command

    def start(self) -> subprocess.Popen[bytes]:
        """Start (or, after a kill, restart) the same command."""
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self.process

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill_tree(self) -> None:
        """SIGKILL the controller and its workers at once, and reap the controller."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def owns(self, pid: int) -> bool:
        """Whether ``pid`` is a live process of this run (never signal anyone else)."""
        try:
            mine = self.process is not None and os.getpgid(pid) == self.process.pid
        except ProcessLookupError:
            return False
        return mine and pid_alive(pid)  # a zombie is dead already

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_tree()
            raise AssertionError(
                f"the study did not finish in {timeout}s:\n{self.tail()}") from None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """Cleanup: end the process group if it still runs."""
        if self.process is not None and self.process.poll() is None:
            self.kill_tree()


def worker_pid(trial: FrozenTrial) -> int | None:
    parts = (trial.worker or "").split(":")
    return int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.05) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def find_study(storage: Storage, name: str) -> Callable[[], int | None]:
    def attempt() -> int | None:
        try:
            return storage.get_study(name).id
        except pbtune.StudyNotFoundError:
            return None

    return attempt


def study_dir(storage: Storage, name: str) -> Path:
    """The study's checkpoint directory (``checkpoint_root / <study dir>``)."""
    record = storage.get_study(name)
    return Path(record.config["checkpoint_root"]) / record.checkpoint_dir


# -- checkpoint audits --------------------------------------------------------------------
class CheckpointAudit:
    """Watches a running study from outside: every COMPLETE trial's checkpoint must be on
    disk under its final name and hold exactly what its trial wrote (unless the garbage
    collector has since dropped it from the record); every directory under a final name
    ``trial-NNNNNN`` must be whole."""

    def __init__(self, storage: Storage, study_id: int, study_name: str, study_dir: Path,
                 log: Path) -> None:
        self.storage = storage
        self.study_id = study_id
        self.study_name = study_name
        self.study_dir = study_dir
        self.log = log
        self.verified: set[int] = set()
        self.dirs_checked: set[str] = set()
        self.checkpoints_checked = 0  # COMPLETE trials whose checkpoint was read whole
        self.problems: list[str] = []

    def poll(self) -> None:
        # Records and directories first, the log last: whatever they show was logged.
        complete = self.storage.get_trials(self.study_id, [TrialState.COMPLETE])
        names = self._final_names()
        ends = self._ends()
        for trial in complete:
            if trial.id in self.verified:
                continue
            self.verified.add(trial.id)
            if trial.checkpoint is None:
                continue  # collected before this poll saw it
            problem = self._whole(trial.checkpoint, ends.get(trial.number))
            self.checkpoints_checked += problem is None
            # The collector forgets a checkpoint in the database before it deletes it.
            stored = self.storage.get_trial(self.study_id, trial.id)
            if problem is not None and stored.checkpoint is not None:
                self.problems.append(f"COMPLETE trial {trial.number}: {problem}")
        self._check_dirs(names, ends)

    def check_final_dirs(self) -> None:
        names = self._final_names()
        self._check_dirs(names, self._ends())

    def _ends(self) -> dict[int, dict[str, Any]]:
        return {e["number"]: e for e in read_log(self.log)
                if e.get("event") == "end" and e["study"] == self.study_name}

    def _final_names(self) -> list[str]:
        try:
            return sorted(p.name for p in self.study_dir.iterdir()
                          if p.name.startswith("trial-") and p.name not in self.dirs_checked)
        except FileNotFoundError:
            return []

    def _check_dirs(self, names: list[str], ends: dict[int, dict[str, Any]]) -> None:
        for name in names:
            path = self.study_dir / name
            end = ends.get(int(name.split("-")[1]))
            problem = self._whole(path, end)
            if problem is not None:
                time.sleep(0.2)  # a directory being collected is gone by now
                problem = self._whole(path, end) if path.exists() else None
            if problem is not None:
                self.problems.append(f"final directory {name}: {problem}")
            if problem is not None or path.exists():
                self.dirs_checked.add(name)

    def _whole(self, path: Path, end: dict[str, Any] | None) -> str | None:
        if end is None:
            return "no end record in the log for a committed checkpoint"
        if not path.is_dir():
            return f"{path} is missing"
        for name, (size, sha) in end["files"].items():
            try:
                got = _digest(path / name)
            except OSError as error:
                return f"{path / name}: {error!r}"
            if got != (size, sha):
                return f"{path / name} is {got[0]} bytes sha {got[1][:12]}, " \
                       f"its trial wrote {size} bytes sha {sha[:12]}"
            if name == BLOB and sha != blob_sha256(self.study_name, end["number"], size):
                return f"{path / name} does not hold the content of trial {end['number']}"
        present = {p.name for p in path.iterdir()}
        if present != set(end["files"]):
            return f"{path} holds {sorted(present)}, its trial wrote {sorted(end['files'])}"
        return None


# -- invariants ---------------------------------------------------------------------------
def log_problems(events: Iterable[dict[str, Any]], study: str,
                 trials: Iterable[FrozenTrial] = ()) -> dict[str, list[str]]:
    """From the independent log: trial ids started or completed more than once (a double
    claim), by two processes at overlapping times, and training from a bad parent.

    A bad parent seen by a trial that had already been failed as lost (a worker stopped
    past its heartbeat timeout, whose claim was revoked and whose result is refused) is
    no harm: nobody uses what it trains. ``trials`` lets those be told apart."""
    revoked = {t.id: t.finished_at for t in trials
               if t.state.is_failure and t.finished_at is not None}
    starts: dict[int, list[dict[str, Any]]] = defaultdict(list)
    ends: dict[int, list[dict[str, Any]]] = defaultdict(list)
    bad: list[str] = []
    for event in events:
        if event.get("study") != study:
            continue
        kind = event.get("event")
        if kind == "start":
            starts[event["id"]].append(event)
        elif kind == "end":
            ends[event["id"]].append(event)
        elif kind == "bad_parent" and revoked.get(event["id"], math.inf) > event["t"]:
            bad.append(f"trial {event['number']}: {event['why']}")
    double: list[str] = []
    for trial_id, seen in sorted(starts.items()):
        if len(seen) > 1:
            spans = []
            for start in seen:
                end = next((e["t"] for e in ends[trial_id] if e["pid"] == start["pid"]), None)
                spans.append((start["pid"], start["t"], end))
            double.append(f"trial id {trial_id} ran {len(seen)} times: (pid, start, end) {spans}")
    twice = [f"trial id {i} logged {len(e)} ends" for i, e in sorted(ends.items()) if len(e) > 1]
    return {"double_claims": double, "completed_twice": twice, "bad_parents": bad}


def study_problems(storage: Storage, name: str, events: Sequence[dict[str, Any]],
                   *, only_lost_failures: bool = True) -> list[str]:
    """The end state that every faulted run must reach: the budget is met, every trial
    ended, every failure was retried once, every child started from a COMPLETE parent, and
    every COMPLETE trial ran exactly once, in the process its record names."""
    record = storage.get_study(name)
    config = pbtune.load_study(name, storage=storage).config
    trials = storage.get_trials(record.id)
    by_id = {t.id: t for t in trials}
    problems: list[str] = []
    if record.state != pbtune.StudyState.COMPLETE:
        problems.append(f"study state is {record.state.value}: {record.error}")
    for t in trials:
        if t.state != TrialState.COMPLETE and not t.state.is_failure:
            problems.append(f"trial {t.number} ended {t.state.value}")
        if t.state.is_failure:
            if t.state == TrialState.LOST and not (t.error or "").startswith("lost"):
                problems.append(f"trial {t.number} is LOST without saying so: {t.error!r:.200}")
            if only_lost_failures and t.state != TrialState.LOST:
                problems.append(f"trial {t.number} failed not as lost: {t.error!r:.200}")
            retries = [r for r in trials if r.decision == "retry" and r.number > t.number
                       and (r.member, r.start_step, r.end_step, r.parent_id, r.params)
                       == (t.member, t.start_step, t.end_step, t.parent_id, t.params)]
            if not retries:
                problems.append(f"failed trial {t.number} has no retry")
        if t.parent_id is not None and t.started_at is not None:
            parent = by_id.get(t.parent_id)
            if parent is None or parent.state != TrialState.COMPLETE:
                problems.append(f"trial {t.number} started from a parent that is not COMPLETE")
            elif parent.finished_at is None or parent.finished_at > t.started_at:
                problems.append(f"trial {t.number} started before its parent completed")
    # Every trial but the first of a member was caused by exactly one earlier event: a
    # retry by a failure, anything else by a completion (the last completion stops).
    for member in range(config.population_size):
        mine = [t for t in trials if t.member == member]
        latest = max(mine, key=lambda t: t.number)
        if latest.state != TrialState.COMPLETE or latest.end_step != config.max_steps:
            problems.append(f"member {member} did not reach max_steps: its latest trial "
                            f"{latest.number} is {latest.state.value} at {latest.end_step}")
        failed = sum(t.state.is_failure for t in mine)
        complete = sum(t.state == TrialState.COMPLETE for t in mine)
        retries = sum(t.decision == "retry" for t in mine)
        # ("explore": in place, when the members still training tie, e.g. two that copied
        # one checkpoint and had their params clipped to the same bound)
        decided = sum(t.decision in ("continue", "exploit", "explore") for t in mine)
        if retries != failed or decided != complete - 1:
            problems.append(f"member {member}: {complete} completions led to {decided} "
                            f"decisions, {failed} failures to {retries} retries")
    ends = Counter(e["id"] for e in events if e.get("event") == "end" and e["study"] == name)
    end_pid = {e["id"]: e["pid"] for e in events if e.get("event") == "end"
               and e["study"] == name}
    for t in trials:
        if t.state == TrialState.COMPLETE:
            if ends[t.id] != 1:
                problems.append(f"COMPLETE trial {t.number} logged {ends[t.id]} ends")
            elif end_pid[t.id] != worker_pid(t):
                problems.append(f"COMPLETE trial {t.number} ran in pid {end_pid[t.id]}, "
                                f"its record names worker {t.worker}")
    return problems


def trained_steps(events: Iterable[dict[str, Any]], study: str) -> int:
    """Steps that training code started on, from the log."""
    return sum(e["end_step"] - e["start_step"] for e in events
               if e.get("event") == "start" and e["study"] == study)


def lost_trials(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.LOST]


# -- storages ------------------------------------------------------------------------------
def storage_urls(kind: str, directory: Path) -> Iterator[str]:
    """For a test fixture: a SQLite file in ``directory``, or a fresh schema of its own on
    the test PostgreSQL server (skipped, or failed when required, without one)."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'study.db'}"
        return
    from conftest import postgres_url

    base = postgres_url()
    schema = f"pbtune_rel_{uuid.uuid4().hex[:12]}"
    url = postgres_schema(base, schema)
    try:
        storage = Storage(url)
        try:
            current = storage._read(lambda c: c.exec_driver_sql("SELECT current_schema()").scalar())
        finally:
            storage.dispose()
        assert current == schema, f"the URL's search_path did not reach the server: {current}"
        yield url
    finally:
        drop_postgres_schema(base, schema)


def postgres_schema(url: str, schema: str) -> str:
    """Create ``schema`` and return ``url`` with it as the search path: a test then owns
    its tables and never touches those of tests that run beside it."""
    import sqlalchemy

    from pbtune.storages import normalize_url

    engine = sqlalchemy.create_engine(normalize_url(url))
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    finally:
        engine.dispose()
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


def drop_postgres_schema(url: str, schema: str) -> None:
    import sqlalchemy

    from pbtune.storages import normalize_url

    base = url.split("?options=")[0].split("&options=")[0]
    engine = sqlalchemy.create_engine(
        normalize_url(base), connect_args={"options": "-c lock_timeout=10000"}
    )
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
