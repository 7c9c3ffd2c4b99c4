"""`ConnectionLender`: how a `Storage` on PostgreSQL uses connections, frugally.

A worker process has up to five threads that use its storage: the worker loop, the
heartbeat, two that claim and tell in the background, and in `pbtune worker` the one that
logs the trials. With SQLAlchemy's pool each kept the connections it had used open for the
life of the process: two or three per worker process, measured with
``benchmarks/connections.py``, so about 40 workers filled a server's default 100
``max_connections``. Instead:

- one connection is open at a time per storage (per process), and the threads take turns
  on it: a transaction takes milliseconds, and the heartbeat can wait for a tell;
- after a transaction the connection is kept about as long as that transaction waited for
  the one before (`KEEP_FACTOR` times, up to `LINGER_S`; a later transaction may keep it
  longer, never shorter), then closed. A worker that uses the database every fraction of
  a second (short trials, reports at every step) keeps it, and does not pay to connect
  (about 3 ms on the same machine) for each transaction;
- a transaction after a quiet spell of `LINGER_S` or more (a heartbeat while a long trial
  trains, the claim that ends it) keeps it only `FOLLOW_UP_S`, for one that follows at
  once (the tell after that claim).

So a worker of long trials holds a connection for little more than its transactions, and
a thousand of them fit in a server's default ``max_connections``; the cost is a
connection opened per heartbeat and one or two per trial. Through PgBouncer (see
`pbtune.storages._engine`) the same rule keeps the number of client connections low.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

LINGER_S = 1.0
KEEP_FACTOR = 4.0
FOLLOW_UP_S = 0.05


class ConnectionLender:
    """Lends one connection of ``engine`` (which must not pool: `NullPool`) to one thread
    at a time, and closes it when the process is done with the database for a while."""

    def __init__(self, engine: Engine, linger_s: float | None = None) -> None:
        self._engine = engine
        self._linger_s = LINGER_S if linger_s is None else linger_s
        # Held by the thread that uses the connection. Reentrant, as the in-memory
        # storage's lock is: a nested use then fails loudly (a transaction is already
        # begun) instead of waiting for itself.
        self._turn = threading.RLock()
        self._connection: Connection | None = None
        self._returned_at = -math.inf  # when the last use ended (time.monotonic)
        self._close_at = -math.inf  # when the connection is closed if unused until then
        self._closer: threading.Thread | None = None

    @contextmanager
    def lend(self) -> Iterator[Connection]:
        """The connection, for one transaction; opened if none is."""
        with self._turn:
            waited_s = time.monotonic() - self._returned_at
            connection = self._connection
            if connection is None or connection.closed or connection.invalidated:
                connection = self._connection = self._engine.connect()
            try:
                yield connection
            finally:
                self._returned_at = time.monotonic()
                # A quick read after a tell does not cut short what the tell kept.
                self._close_at = max(self._close_at, self._returned_at + self._keep_for(waited_s))
                if connection.invalidated:
                    self._close()
                elif self._closer is None:
                    self._closer = threading.Thread(target=self._close_when_idle,
                                                    name="pbtune-connection", daemon=True)
                    self._closer.start()

    def close(self) -> None:
        """Close the connection now (it is opened again if needed)."""
        with self._turn:
            self._close()

    def _keep_for(self, waited_s: float) -> float:
        if waited_s >= self._linger_s:
            return FOLLOW_UP_S
        return min(self._linger_s, max(FOLLOW_UP_S, KEEP_FACTOR * waited_s))

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _close_when_idle(self) -> None:
        while True:
            with self._turn:
                wait_s = self._close_at - time.monotonic()
                if self._connection is None or wait_s <= 0:
                    self._close()
                    self._closer = None
                    return
            time.sleep(wait_s)
