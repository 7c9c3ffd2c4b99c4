"""Which database errors are worth retrying (a lock, a restart, a dropped connection),
and the one line of an error that a pbtune error quotes."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

_TRANSIENT_MARKERS = (
    "database is locked",
    "database table is locked",
    "could not serialize",
    "deadlock detected",
    "connection refused",
    "server closed the connection",
    "terminating connection",
    "the database system is starting up",
    "the database system is shutting down",
    "connection is closed",
    "consuming input failed",
    "connection failed",
)


# A pooler that refuses what pbtune sends a server (see `explain`): no retry helps.
_POOLER_MARKERS = ("unsupported startup parameter",)


def is_transient(error: DBAPIError) -> bool:
    text = str(error.orig if error.orig is not None else error).lower()
    if any(marker in text for marker in _POOLER_MARKERS):
        return False
    if error.connection_invalidated:
        return True
    return any(marker in text for marker in _TRANSIENT_MARKERS)


def short(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip().splitlines()
    return text[0] if text else type(error).__name__
