"""What a database error that is not worth retrying means, in one line a user can act on.

`Storage` retries transient errors (`pbtune.storages._transient`); every other database
error leaves it as a `StorageError` whose message comes from `explain`: what is wrong
(a damaged file, a full disk, no permission, a server error) and what to do about it,
never SQLAlchemy's multi-line text with its SQL. A transient error that outlasts the
retries is said by `gave_up` (a server with no connection to spare: what to change).
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from pbtune.storages._transient import at_connection_limit, short

# SQLite's primary result codes (``sqlite3.Error.sqlite_errorname``, Python 3.11+) and the
# words of their messages, for older Pythons.
_SQLITE_KINDS = (
    ("damaged", ("SQLITE_CORRUPT", "SQLITE_NOTADB"),
     ("malformed", "file is not a database", "database corruption")),
    ("full", ("SQLITE_FULL",), ("database or disk is full",)),
    ("read-only", ("SQLITE_READONLY",), ("readonly database", "read-only")),
    ("cannot-open", ("SQLITE_CANTOPEN",), ("unable to open database file",)),
    ("permission", ("SQLITE_PERM", "SQLITE_AUTH"), ("access permission denied",)),
    ("io", ("SQLITE_IOERR",), ("disk i/o error",)),
)

# PostgreSQL's SQLSTATE codes (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_POSTGRES_KINDS = (
    ("full", ("53100",), ()),  # disk_full
    ("permission", ("42501",), ()),  # insufficient_privilege
    ("damaged", ("XX001", "XX002"), ()),  # data_corrupted, index_corrupted
    ("io", ("58030",), ()),  # io_error
    ("memory", ("53200",), ()),  # out_of_memory
    ("read-only", ("25006",), ()),  # read_only_sql_transaction (a standby)
    # A pooler in front of the server: it refuses pbtune's startup options, or a statement
    # prepared in one transaction is missing (or there already) in the next.
    ("pooler", ("26000", "42P05"),  # invalid_sql_statement_name, duplicate_prepared_statement
     ("unsupported startup parameter", "prepared statement")),
)


def explain(error: DBAPIError, shown: str, database: str | None, *,
            opening: bool = False) -> str:
    """One line for ``error`` raised by the storage ``shown`` (its repr): what is wrong
    and what to do. ``database`` is the SQLite file, None for PostgreSQL.

    Example::

        explain(error, "Storage('sqlite:///study.db')", "study.db")
        # "storage Storage('sqlite:///study.db') failed: database disk image is
        #  malformed; the database file 'study.db' is damaged. Restore it from a copy ..."
    """
    reason = short(error)
    if database is not None:
        kind = _kind(error, _SQLITE_KINDS)
        advice = _SQLITE_ADVICE.get(kind, _SQLITE_OTHER).format(path=database)
    else:
        kind = _kind(error, _POSTGRES_KINDS)
        advice = _POSTGRES_ADVICE.get(kind, _POSTGRES_OTHER)
    what = f"cannot open storage {shown}" if opening else f"storage {shown} failed"
    return f"{what}: {reason}; {advice}"


def gave_up(error: DBAPIError, shown: str, *, attempts: int, waited_s: float,
            opening: bool) -> str:
    """One line for a transient ``error`` that outlasted the retries of the storage
    ``shown`` (its repr): ``attempts`` over ``waited_s`` seconds."""
    what = f"cannot open storage {shown}" if opening else f"storage {shown} failed"
    if at_connection_limit(error):
        return (f"{what}: it refused connections for {waited_s:.0f} s ({short(error)}); "
                f"{_connection_limit_advice(error)}")
    if opening:
        return f"{what}: {short(error)}"
    return f"storage {shown} kept failing after {attempts} attempts: {short(error)}"


def _connection_limit_advice(error: DBAPIError) -> str:
    """What to do when the server (or PgBouncer) kept refusing connections."""
    if "max_client_conn" in str(error.orig if error.orig is not None else error):
        return ("PgBouncer accepts no more clients: raise max_client_conn in its "
                "pgbouncer.ini (a pbtune process holds at most one connection)")
    return ("the database server has no connection to spare. A pbtune process holds at "
            "most one: run fewer workers (or other clients) against this server, put "
            "PgBouncer in transaction pooling mode in front of it and add "
            "?pbtune_pooler=transaction to the storage URL, or raise the server's "
            "max_connections (or the CONNECTION LIMIT of the role or the database)")


def _kind(error: DBAPIError,
          kinds: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]) -> str:
    orig = error.orig
    code = str(getattr(orig, "sqlite_errorname", None) or getattr(orig, "sqlstate", None)
               or "")
    text = str(orig if orig is not None else error).lower()
    for kind, codes, words in kinds:
        if code in codes or any(word in text for word in words):
            return kind
    return "other"


_SQLITE_ADVICE = {
    "damaged": ("the database file {path!r} is damaged and pbtune cannot read it. Restore "
                "it from a backup copy (or run with a new database file) and check the disk"),
    "full": ("the disk that holds {path!r} is full. Free space on it and run again: what "
             "was committed before is kept"),
    "read-only": ("{path!r} cannot be written. Make the file and its folder writable by this "
                  "user (SQLite writes a -wal and a -shm file beside it), or check that the "
                  "disk is not mounted read-only"),
    "cannot-open": ("{path!r} cannot be opened. Check that its folder exists and is writable "
                    "by this user, and that the path names a file, not a folder"),
    "permission": "this user may not access {path!r}. Check the file's permissions",
    "io": ("reading or writing {path!r} failed. Check the disk (its free space, its mount, "
           "the system log), then run again"),
}
_SQLITE_OTHER = ("this is not an error that goes away by retrying. Check the file {path!r} "
                 "and its disk")

_POSTGRES_ADVICE = {
    "full": ("the database server's disk is full. Free space on the server and run again: "
             "what was committed before is kept"),
    "permission": ("the database user lacks a privilege pbtune needs. Grant it CREATE on "
                   "the schema, or open the storage once as a user who may create tables "
                   "and grant this one SELECT, INSERT, UPDATE, DELETE on the pbtune_* tables "
                   "and USAGE on their sequences (GRANT USAGE ON ALL SEQUENCES IN SCHEMA "
                   "... TO ...)"),
    "damaged": ("the server reports damaged data. Restore the database from a backup and "
                "check the server's disk"),
    "io": "the database server cannot read or write its files. Check the server's disk",
    "memory": "the database server ran out of memory. Check the server, then run again",
    "read-only": ("the server accepts no writes (a standby or a read-only transaction). "
                  "Point the URL at the primary"),
    "pooler": ("the URL reaches a connection pooler (PgBouncer), which pbtune must be told "
               "of: add ?pbtune_pooler=transaction to the storage URL (or "
               "?pbtune_pooler=session for a pool_mode of session)"),
}
_POSTGRES_OTHER = ("this is not an error that goes away by retrying. Check the database "
                   "server's log")
