"""Which database errors are worth retrying (a lock, a restart, a dropped connection, a
server with no connection to spare), and the one line of an error that a pbtune error
quotes."""

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


# The server, or a pooler in front of it, refuses one more connection: it clears as other
# clients close theirs. psycopg gives no SQLSTATE for a refused connection, only the text.
_LIMIT_MARKERS = (
    "too many clients already",  # 53300: the server's max_connections
    "too many connections for",  # 53300: a role's or a database's CONNECTION LIMIT
    "remaining connection slots are reserved",  # 53300: the slots kept for superusers
    "no more connections allowed",  # PgBouncer's max_client_conn
)
# A pooler that refuses what pbtune sends a server (see `explain`): no retry helps.
_POOLER_MARKERS = ("unsupported startup parameter",)


def is_transient(error: DBAPIError) -> bool:
    text = _text(error)
    if any(marker in text for marker in _POOLER_MARKERS):
        return False
    if error.connection_invalidated or at_connection_limit(error):
        return True
    return any(marker in text for marker in _TRANSIENT_MARKERS)


def at_connection_limit(error: DBAPIError) -> bool:
    """Whether the server (or PgBouncer) refused a connection for want of a free one."""
    if getattr(error.orig, "sqlstate", None) == "53300":  # too_many_connections
        return True
    text = _text(error)
    return any(marker in text for marker in _LIMIT_MARKERS)


def _text(error: DBAPIError) -> str:
    return str(error.orig if error.orig is not None else error).lower()


def short(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip().splitlines()
    return text[0] if text else type(error).__name__
