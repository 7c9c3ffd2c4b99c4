"""The database's clock: the one clock that every process of a study shares.

Workers run on machines whose clocks disagree (by seconds without NTP, by minutes after a
bad sync). A time that one process writes and another compares with its own clock, such
as a heartbeat, would make a worker whose clock runs ahead look alive long after it died,
and one whose clock runs behind look dead while it works. So heartbeats are stamped, and
judged, in SQL with the database's clock: PostgreSQL's ``clock_timestamp()`` on the
server; SQLite's ``julianday('now')``, which is the local machine's clock, the only one
that the processes sharing a SQLite file can have.

A caller may instead pass a time of its own (``now``); it must then pass it to every
stamp and judgement, as a simulation on a virtual clock would.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import ColumnElement, Float, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class DatabaseNow(FunctionElement[float]):
    """The current time on the database's clock, in seconds since the epoch (as
    ``time.time()``); read when the statement runs, not when its transaction began."""

    type = Float()
    inherit_cache = True
    name = "pbtune_database_now"


@compiles(DatabaseNow)
def _sqlite_now(element: DatabaseNow, compiler: Any, **kw: Any) -> str:
    # julianday counts days from noon of 24 November 4714 BC; 2440587.5 is 1970-01-01.
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(DatabaseNow, "postgresql")
def _postgresql_now(element: DatabaseNow, compiler: Any, **kw: Any) -> str:
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


def stamp(now: float | None) -> ColumnElement[float]:
    """``now`` as a SQL value, or the database's clock for None."""
    return DatabaseNow() if now is None else literal(now, Float())


class Clock:
    """The clock a study's controller reads: real time, and the database's clock for
    heartbeats and backoffs (see above). Injected once, into the `Storage`
    (``Storage(url, clock=...)``), which hands it to every transaction and controller;
    a simulation injects a `VirtualClock` instead."""

    def time(self) -> float:
        """Seconds since the epoch, as ``time.time()``: what a record shows a user."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds on a clock that no clock change moves: intervals of this process."""
        return time.monotonic()

    def stamp(self) -> float | None:
        """The time heartbeats and backoffs are stamped and judged with: None for the
        database's own clock."""
        return None


class VirtualClock(Clock):
    """Simulated time, moved only by `advance`: every stamp, judgement and record reads it,
    so a study runs hours of its life in seconds of real time."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def stamp(self) -> float | None:
        return self._now

    def advance(self, to: float) -> None:
        """Move the clock to ``to``; it never goes back."""
        if to < self._now:
            raise ValueError(f"a virtual clock never goes back ({to} < {self._now})")
        self._now = float(to)


SYSTEM_CLOCK = Clock()
