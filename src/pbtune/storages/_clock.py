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
