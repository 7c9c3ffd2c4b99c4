"""Training functions that count, in PostgreSQL's ``pg_stat_activity``, the connections
of the worker process they run in; worker processes import them by path.

A connection is this process's when its client port is one of this process's sockets
(Linux: ``/proc/self``). The count leaves out the connection that does the counting.
"""

from __future__ import annotations

import os
import time

import psycopg

import pbtune
from pbtune.storages import normalize_url

URL_ENV = "PBTUNE_TEST_POSTGRES_URL"
REPORTS = 20  # transactions in a row on the worker loop's thread, as the heartbeat beats
IDLE_WAIT_S = 60.0  # a bound: the connection closes about a second after its last use


def _own_ports() -> set[int]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table, encoding="ascii") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def held_here(counter: psycopg.Connection) -> int:
    """The connections this process holds to the test database, but ``counter``."""
    row = counter.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND client_port = ANY(%s)", (sorted(_own_ports()),)
    ).fetchone()
    assert row is not None
    return int(row[0])


def _counter() -> psycopg.Connection:
    url = normalize_url(os.environ[URL_ENV]).replace("postgresql+psycopg", "postgresql", 1)
    return psycopg.connect(url, autocommit=True)


def busy(trial: pbtune.Trial) -> dict[str, float]:
    """Reports in a row (a transaction each, on this thread) while the heartbeat thread
    beats, and counts this process's connections after each one: ``most_held``."""
    with _counter() as counter:
        most = 0
        for step in range(REPORTS):
            trial.report(trial.start_step, score=float(step))
            most = max(most, held_here(counter))
    (trial.checkpoint_dir / "done").write_text("1")
    return {"score": float(trial.params["x"]), "most_held": float(most)}


def idle(trial: pbtune.Trial) -> dict[str, float]:
    """Waits, as a long trial trains, until this process holds no connection:
    ``closed`` is 1 once it holds none (0 if it still held one after `IDLE_WAIT_S`)."""
    with _counter() as counter:
        give_up = time.monotonic() + IDLE_WAIT_S
        while held_here(counter) and time.monotonic() < give_up:
            time.sleep(0.1)
        closed = held_here(counter) == 0
    (trial.checkpoint_dir / "done").write_text("1")
    return {"score": float(trial.params["x"]), "closed": float(closed)}
