"""Keeping PostgreSQL's query planner informed as a study grows.

The planner picks joins by its statistics of each table. A table it has never analyzed, or
last analyzed when it was small (autovacuum is off on some servers, and on the others it
wakes once a minute), looks a few rows long: the joins of a decision (the members' latest
results, the checkpoints garbage collection keeps) then become nested loops over the whole
population, and a decision over 1,000 members took 350 ms instead of a few. So the study's
own writes refresh the statistics when its trial count doubles (`grew_past`): a dozen
ANALYZEs up to 100,000 trials, each a sample of at most 30,000 rows, run after the
decision commits, not inside it.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from pbtune.storages._schema import members, reports, trials

FIRST_REFRESH = 64  # trials; below this every plan is cheap
LOCK_WAIT = "2s"


def grew_past(number: int) -> bool:
    """Whether a study whose newest trial is ``number`` just doubled in size (64, 128,
    256, ... trials), so its tables' statistics are due for a refresh."""
    size = number + 1
    return size >= FIRST_REFRESH and size & (size - 1) == 0


def refresh_statistics(connection: Connection) -> None:
    """ANALYZE pbtune's tables, in the connection's transaction. It waits at most
    LOCK_WAIT for a running autovacuum of the same table, which is refreshing them anyway;
    a role that may not analyze them (the owner or a superuser may) is skipped with a
    server warning."""
    names = ", ".join(connection.dialect.identifier_preparer.format_table(t)
                      for t in (trials, members, reports))
    connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
    connection.execute(text(f"ANALYZE {names}"))
