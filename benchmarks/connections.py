"""How many PostgreSQL connections pbtune's processes hold, counted by the server.

    python benchmarks/connections.py --storage postgresql://postgres@127.0.0.1:5432/bench
    python benchmarks/connections.py --storage ... --run optimize --workers 4 --trial-s 2
    python benchmarks/connections.py --storage ... --connect-cost

(Give it a database of its own: it drops pbtune's tables there first.)

``--run worker`` starts ``--workers`` `pbtune worker` processes on one study; ``--run
optimize`` one process that runs ``study.optimize(train, workers=N)`` (a controller and N
worker processes). Every ``--sample-s`` it reads ``pg_stat_activity`` and finds, by the
client's TCP port, which local process holds each connection. It prints, per kind of
process, the most connections one process held at once, the mean held over the run and
how many it opened; then the arithmetic for 1,000 workers against the server's
``max_connections``. ``--heartbeat-s`` shorter than ``--trial-s`` makes the heartbeat
thread beat while trials train, as with long trials.

``--src`` runs the processes on another checkout's pbtune (to compare with it);
``--worker-storage`` gives them another URL (a role with a ``CONNECTION LIMIT``, say: then
the figures say how many processes failed, and their last line).
``--connect-cost`` times what opening a connection costs: a heartbeat-like transaction
on a connection kept open, against one on a connection opened for it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil
import psycopg
from sqlalchemy.engine import make_url

import pbtune
from pbtune.storages import normalize_url

ROOT = Path(__file__).resolve().parent.parent
TRIAL_S_ENV = "PBTUNE_BENCH_TRIAL_S"
WORKERS_AT_SCALE = 1000


def train(trial: pbtune.Trial) -> dict[str, float]:
    """A trial that sleeps ``PBTUNE_BENCH_TRIAL_S`` seconds and keeps a tiny checkpoint."""
    time.sleep(float(os.environ.get(TRIAL_S_ENV, "0.2")))
    (trial.checkpoint_dir / "x").write_text(str(trial.params["x"]))
    return {"score": float(trial.params["x"]) + trial.end_step}


def _libpq_url(url: str) -> str:
    """``url`` as psycopg takes it (without pbtune's own options)."""
    from pbtune.storages._engine import POOLER_OPTION  # not in the pbtune of --src, maybe

    parsed = make_url(normalize_url(url)).difference_update_query([POOLER_OPTION])
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class Sampler:
    """Reads ``pg_stat_activity`` every ``every_s`` seconds in a thread, and attributes
    each client connection to the local process that holds its TCP port: one of
    ``roots`` (set once they are started), their children, or a PgBouncer."""

    def __init__(self, url: str, every_s: float) -> None:
        self._connection = psycopg.connect(_libpq_url(url), autocommit=True,
                                           prepare_threshold=None,
                                           application_name="pbtune-bench-sampler")
        self._every_s = every_s
        self.roots: list[int] = []
        self._owners: dict[tuple[int, int], int] = {}  # (backend, port) -> pid
        self.samples: list[dict[int, int]] = []  # pid -> connections, per sample
        self.opened: dict[int, set[int]] = defaultdict(set)  # pid -> backends seen
        self.names: dict[int, set[str]] = defaultdict(set)  # pid -> application names
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._connection.close()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            rows = self._connection.execute(
                "SELECT pid, client_port, application_name FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'").fetchall()
            held: dict[int, int] = defaultdict(int)
            for backend, port, name in rows:
                pid = self._owner(backend, port)
                if pid is None:
                    continue
                held[pid] += 1
                self.opened[pid].add(backend)
                self.names[pid].add(name)
            self.samples.append(dict(held))

    def _owner(self, backend: int, port: int | None) -> int | None:
        """The pid of the local process at the client end (a new backend for each new
        connection, so a port that another process used before is looked up again)."""
        if port is None or port < 0:
            return None
        key = (backend, port)
        if key not in self._owners:
            found = self._find(port)
            if found is None:
                return None  # not one of ours, or not yet known: looked up again
            self._owners[key] = found
        return self._owners[key]

    def _find(self, port: int) -> int | None:
        for process in self._candidates():
            try:
                if any(c.laddr and c.laddr.port == port
                       for c in process.net_connections("tcp")):
                    return process.pid
            except psutil.Error:
                continue  # ended meanwhile
        return None

    def _candidates(self) -> list[psutil.Process]:
        found = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "pgbouncer"]
        for pid in self.roots:
            try:
                root = psutil.Process(pid)
                found += [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
        return found


def _study(url: str, workers: int, trial_s: float, heartbeat_s: float, max_steps: int,
           root: Path) -> str:
    name = f"connections-{uuid.uuid4().hex[:8]}"
    pbtune.create_study(
        name, space={"x": pbtune.Float(0.0, 1.0)}, storage=url, metric="score",
        population_size=2 * workers, steps_per_trial=1, max_steps=max_steps,
        checkpoint_root=root, heartbeat_timeout=6 * heartbeat_s,
    )
    return name


def _drop_tables(url: str) -> None:
    from sqlalchemy import create_engine

    from pbtune.storages._schema import metadata

    engine = create_engine(_libpq_url(url).replace("postgresql://", "postgresql+psycopg://"))
    metadata.drop_all(engine)
    engine.dispose()


def measure(url: str, run: str, workers: int, trial_s: float, heartbeat_s: float,
            max_steps: int, sample_s: float, src: Path, worker_url: str) -> dict[str, Any]:
    _drop_tables(url)
    env = {**os.environ, TRIAL_S_ENV: str(trial_s),
           "PYTHONPATH": os.pathsep.join([str(src), str(ROOT / "benchmarks")])}
    with tempfile.TemporaryDirectory() as root:
        name = _study(url, workers, trial_s, heartbeat_s, max_steps, Path(root))
        if run == "worker":
            command = [sys.executable, "-m", "pbtune", "worker", "--storage", worker_url,
                       "--study", name, "--entry", "connections:train"]
            commands = [command] * workers
        else:
            commands = [[sys.executable, __file__, "--storage", worker_url, "--optimize",
                         name, "--workers", str(workers)]]
        started = time.perf_counter()
        with Sampler(url, sample_s) as sampler:
            processes = [subprocess.Popen(c, env=env, cwd=root, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE) for c in commands]
            sampler.roots = [p.pid for p in processes]
            errors = [p.communicate(timeout=600)[1].decode() for p in processes]
        wall = time.perf_counter() - started
        trials = pbtune.load_study(name, storage=url).trials()
    tops = {p.pid for p in processes}
    failed = [_last_line(e) for p, e in zip(processes, errors, strict=True) if p.returncode]
    figures = {"run": run, "src": str(src), "workers": workers, "trial_s": trial_s,
               "heartbeat_s": heartbeat_s, "wall_s": round(wall, 2), "trials": len(trials),
               "complete": sum(t.state == pbtune.TrialState.COMPLETE for t in trials),
               "failed_processes": len(failed), "errors": failed}
    return {**figures, **_held(sampler, tops, run)}


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1][:400] if lines else ""


def _held(sampler: Sampler, tops: set[int], run: str) -> dict[str, Any]:
    kinds: dict[str, list[int]] = defaultdict(list)
    for pid in sampler.opened:
        kinds[_kind(pid, tops, run)].append(pid)
    figures: dict[str, Any] = {"samples": len(sampler.samples)}
    total_peak = max((sum(s.values()) for s in sampler.samples), default=0)
    figures["peak_total"] = total_peak
    for kind, pids in sorted(kinds.items()):
        peaks = [max((s.get(p, 0) for s in sampler.samples), default=0) for p in pids]
        means = [statistics.fmean(s.get(p, 0) for s in sampler.samples) for p in pids]
        opened = [len(sampler.opened[p]) for p in pids]
        names = sorted(set().union(*(sampler.names[p] for p in pids)))
        figures[kind] = {"processes": len(pids), "peak_per_process": max(peaks),
                         "mean_per_process": round(statistics.fmean(means), 3),
                         "opened_per_process": round(statistics.fmean(opened), 1),
                         "application_names": names}
    return figures


def _kind(pid: int, tops: set[int], run: str) -> str:
    if run == "optimize" and pid in tops:
        return "controller"
    try:
        if psutil.Process(pid).name() == "pgbouncer":
            return "pgbouncer"
    except psutil.Error:
        pass
    return "worker"


def optimize_child(url: str, name: str, workers: int) -> None:
    """``--optimize NAME``: run the study as a user's script would."""
    study = pbtune.load_study(name, storage=url)
    study.optimize(train, workers=workers, show_progress=False)


def connect_cost(url: str, repeats: int) -> dict[str, Any]:
    """Milliseconds to run a heartbeat-like transaction (an UPDATE of one row) on a
    connection kept open, and on one opened for it (pbtune's engine, so a URL through
    PgBouncer works too)."""
    from sqlalchemy import text

    from pbtune.storages._engine import create_storage_engine

    engine = create_storage_engine(normalize_url(url))  # opens a connection per connect()
    kept = engine.connect()

    def beat(connection: Any) -> None:
        with connection.begin():
            connection.execute(text("UPDATE bench_beat SET at = :at WHERE id = 1"),
                               {"at": time.time()})

    def fresh() -> None:
        with engine.connect() as connection:
            beat(connection)

    def timed(fn: Any) -> float:
        began = time.perf_counter()
        fn()
        return 1000 * (time.perf_counter() - began)

    with kept.begin():
        kept.execute(text("CREATE TABLE IF NOT EXISTS bench_beat (id int PRIMARY KEY, "
                          "at double precision)"))
        kept.execute(text("INSERT INTO bench_beat VALUES (1, 0) ON CONFLICT DO NOTHING"))
    ms: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeats):  # interleaved, so a busy moment slows each alike
        ms["on_kept_connection"].append(timed(lambda: beat(kept)))
        ms["on_new_connection"].append(timed(fresh))
    with kept.begin():
        kept.execute(text("DROP TABLE bench_beat"))
    kept.close()
    return {key: {"median_ms": round(statistics.median(v), 3),
                  "p90_ms": round(statistics.quantiles(v, n=10)[-1], 3)}
            for key, v in ms.items()}


def arithmetic(figures: dict[str, Any], max_connections: int) -> str:
    if "pgbouncer" in figures:
        held = figures["pgbouncer"]["peak_per_process"]
        return (f"through PgBouncer the server saw at most {held} connections for "
                f"{figures['workers']} workers (its default_pool_size bounds them for any "
                f"number); the server allows {max_connections}")
    if "worker" not in figures:
        return f"no worker connection was seen; the server allows {max_connections}"
    worker = figures["worker"]
    peak = WORKERS_AT_SCALE * worker["peak_per_process"]
    mean = WORKERS_AT_SCALE * worker["mean_per_process"]
    return (f"{WORKERS_AT_SCALE} workers: at most {peak} connections if every one held its "
            f"peak at once, {mean:.0f} on average with these trials; the server allows "
            f"{max_connections}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--run", choices=("worker", "optimize"), default="worker")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trial-s", type=float, default=0.2)
    parser.add_argument("--heartbeat-s", type=float, default=10.0,
                        help="the heartbeat interval (heartbeat_timeout / 6; pbtune's default 10)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="steps (trials) per member [default: about 4 s of trials each]")
    parser.add_argument("--worker-storage", metavar="URL",
                        help="the URL the runs use [default: --storage]; e.g. a role with a "
                             "CONNECTION LIMIT, to see what a full server does")
    parser.add_argument("--src", type=Path, default=ROOT / "src",
                        help="the pbtune that the runs use (another checkout's src, to compare)")
    parser.add_argument("--sample-s", type=float, default=0.02)
    parser.add_argument("--connect-cost", action="store_true")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--optimize", metavar="NAME", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.optimize:
        optimize_child(args.storage, args.optimize, args.workers)
        return
    if args.connect_cost:
        print(json.dumps(connect_cost(args.storage, args.repeats)))
        return
    max_steps = args.max_steps or max(4, int(4 / args.trial_s))
    figures = measure(args.storage, args.run, args.workers, args.trial_s,
                      args.heartbeat_s, max_steps, args.sample_s, args.src,
                      args.worker_storage or args.storage)
    with psycopg.connect(_libpq_url(args.storage)) as connection:
        row = connection.execute("SHOW max_connections").fetchone()
    assert row is not None
    print(json.dumps(figures))
    print(arithmetic(figures, int(row[0])))


if __name__ == "__main__":
    main()
