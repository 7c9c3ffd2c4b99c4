"""Keeping a growing study's PostgreSQL tables fit for its queries.

The planner picks joins by its statistics of each table. A table it has never analyzed, or
last analyzed when it was small, looks a few rows long: the joins of a decision (the
members' latest results, the checkpoints garbage collection keeps) then became nested loops
over the whole population, and a decision over 1,000 members took 350 ms instead of a few.
And every claim, result and forgotten checkpoint leaves a dead row version behind, with an
entry in each index that a decision's index scans still visit until VACUUM removes it: at
40,000 trials, garbage collection read 37,000 index entries to find 1,100 live ones.
Autovacuum does both, but once a table has changed by a fifth, at most once a minute, and
not at all on a server with ``autovacuum = off``.

So the study's own writes tidy its tables (`tidy`) when its trials double up to
`EVERY_TRIALS`, and every `EVERY_TRIALS` trials after (`due`), after the write that
crossed the mark has committed: about 100 times up to 100,000 trials, each a VACUUM that
skips the pages no one changed and an ANALYZE of at most 30,000 sampled rows.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from pbtune.storages._schema import members, reports, trials

FIRST_TRIALS = 64  # below this every plan is cheap
EVERY_TRIALS = 1024


def due(number: int) -> bool:
    """Whether a study whose newest trial is ``number`` just reached a size at which its
    tables are tidied: 64, 128, ..., 1,024 trials, then every 1,024."""
    size = number + 1
    if size < EVERY_TRIALS:
        return size >= FIRST_TRIALS and size & (size - 1) == 0
    return size % EVERY_TRIALS == 0


def tidy(connection: Connection) -> None:
    """VACUUM and ANALYZE pbtune's tables, on a connection in autocommit mode (VACUUM runs
    in no transaction). A table that another VACUUM (autovacuum's) holds is skipped, as
    are, with a server warning, the tables of a role that may not vacuum them (their
    owner and a superuser may): a study goes on with the tables as they are."""
    names = ", ".join(connection.dialect.identifier_preparer.format_table(t)
                      for t in (trials, members, reports))
    # INDEX_CLEANUP ON: the dead index entries are what the decision's scans pay for; the
    # server would leave them when few pages hold dead rows.
    connection.execute(text(f"VACUUM (ANALYZE, SKIP_LOCKED, INDEX_CLEANUP ON) {names}"))
