"""Storage URLs: their rules (the PostgreSQL spellings and ``?pbtune_pooler=`` for one
that reaches PgBouncer; SQLite's file, in-memory and URI forms), and opening a database
from one: SQLite (WAL, busy timeout, BEGIN IMMEDIATE) or PostgreSQL. Every part of pbtune
that reads a storage URL asks these functions."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import NullPool, StaticPool

from pbtune._errors import StorageError

SQLITE_BUSY_TIMEOUT_S = 60.0
_SQLITE_MAGIC = b"SQLite format 3\x00"  # how every SQLite database file begins
_SQLITE_MIN_PAGE_SIZE = 512
# ``postgresql://...?pbtune_pooler=transaction``: the URL reaches PgBouncer (or another
# pooler) in that pool_mode, not the server itself.
POOLER_OPTION = "pbtune_pooler"
POOLER_MODES = ("transaction", "session")

_URL_HELP = (
    "use 'sqlite:///path/to/file.db' (a local file), "
    "'postgresql://user@host:5432/dbname' (needs pbtune[postgresql]); in Python, None "
    "is an in-memory study"
)


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` and ``postgres://`` URLs; pbtune drives psycopg 3."""
    if not isinstance(url, str) or not url.strip():
        raise StorageError(f"storage URL must be a non-empty string, got {url!r}; {_URL_HELP}")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _parse(url: str | URL) -> URL | None:
    if isinstance(url, URL):
        return url
    try:
        return make_url(url)
    except ArgumentError:
        return None


def is_sqlite_memory(url: str | URL) -> bool:
    """True for a SQLite URL that names no file: ``sqlite://`` or ``sqlite:///:memory:``."""
    parsed = _parse(url)
    return (parsed is not None and parsed.get_backend_name() == "sqlite"
            and (not parsed.database or parsed.database == ":memory:"))


def is_sqlite_uri(url: str | URL) -> bool:
    """True for a SQLite URL with ``?uri=true``: SQLite reads its database as an SQLite URI
    (``sqlite:///file:study.db?mode=ro&uri=true``), a file named in SQLite's own syntax."""
    parsed = _parse(url)
    return (parsed is not None and parsed.get_backend_name() == "sqlite"
            and str(parsed.query.get("uri", "")).lower() in ("true", "1"))


def sqlite_file(url: str | URL) -> str | None:
    """The file a SQLite URL names, as written (it may be relative); None for another
    database, an in-memory or a URI form (see `is_sqlite_memory`, `is_sqlite_uri`), or a
    URL that does not parse (`Storage` says what is wrong with it).

    Example::

        sqlite_file("sqlite:///runs/pbtune.db")  # "runs/pbtune.db"
    """
    parsed = _parse(url)
    if parsed is None or parsed.get_backend_name() != "sqlite":
        return None
    if is_sqlite_memory(parsed) or is_sqlite_uri(parsed):
        return None
    return parsed.database


def absolute_sqlite_url(url: str) -> str:
    """``url`` with a relative SQLite file made absolute; any other URL as it is. Processes
    that start in other folders (Ray workers) then open the same file.

    Example::

        absolute_sqlite_url("sqlite:///pbtune.db")  # "sqlite:////home/me/pbtune.db"
    """
    database = sqlite_file(url)
    if database is None or os.path.isabs(database):
        return url
    parsed = make_url(url).set(database=os.path.abspath(database))
    return parsed.render_as_string(hide_password=False)


def create_storage_engine(url: str | None, *, application_name: str = "pbtune") -> Engine:
    """An engine for ``url``; None means a private in-memory SQLite database.
    ``application_name``: how PostgreSQL lists the connections (``pg_stat_activity``),
    unless the URL names one."""
    if url is None:
        engine = create_engine(
            "sqlite://",
            connect_args={"check_same_thread": False},
            poolclass=StaticPool,
        )
        _tune_sqlite(engine, wal=False)
        return engine
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(f"cannot parse storage URL {url!r}; {_URL_HELP}") from None
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        if is_sqlite_memory(parsed):
            raise StorageError(
                f"storage {url!r} names no file; pass storage=None for an in-memory study "
                "or 'sqlite:///study.db' for a file that workers can share"
            )
        database = sqlite_file(parsed)
        if database is not None:
            _refuse_other_files(database, url)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    elif backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise StorageError(
                f"storage {url!r}: pbtune uses the psycopg (3) driver; write "
                "'postgresql://...' or 'postgresql+psycopg://...'"
            )
        pooler = _pooler(parsed, url)
        parsed = parsed.difference_update_query([POOLER_OPTION])
        # `Storage` lends one connection at a time and closes it when idle (see
        # `ConnectionLender`): the engine itself keeps none.
        kwargs["poolclass"] = NullPool
        kwargs["connect_args"] = _postgres_connect_args(parsed, pooler, application_name)
    else:
        raise StorageError(f"unsupported storage backend {backend!r} in {url!r}; {_URL_HELP}")
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError:
        raise StorageError(f"unsupported storage URL {url!r}; {_URL_HELP}") from None
    except ImportError as error:
        raise StorageError(
            f"storage {url!r} needs a driver that is not installed ({error}); "
            "run: pip install 'pbtune[postgresql]'"
        ) from None
    if backend == "sqlite":
        _tune_sqlite(engine, wal=True)
    return engine


def _pooler(parsed: URL, url: str) -> str | None:
    """The pooler a PostgreSQL URL says it goes through (``?pbtune_pooler=transaction``,
    or ``session``), None for a server; refuses another value."""
    values = _query_values(parsed.query.get(POOLER_OPTION))
    if not values:
        return None
    if len(values) > 1 or values[0] not in POOLER_MODES:
        raise StorageError(
            f"storage {url!r}: {POOLER_OPTION} must be one of {', '.join(POOLER_MODES)} (the "
            "pool_mode of the PgBouncer that the URL reaches), got "
            f"{', '.join(map(repr, values))}"
        )
    return values[0]


def _postgres_connect_args(parsed: URL, pooler: str | None,
                           application_name: str) -> dict[str, Any]:
    args: dict[str, Any] = {
        "connect_timeout": 10,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    if "application_name" not in parsed.query:
        args["application_name"] = application_name
    if pooler is None:
        # A worker host that dies inside a transaction must not hold the study's row
        # lock until TCP gives up (hours): the server ends such sessions. Options in the
        # URL (``?options=-csearch_path%3Dmyschema``) are kept, and win where they overlap.
        # A pooler refuses startup options; its own idle_transaction_timeout does this
        # there (docs/guides/postgresql.md).
        options = "-c idle_in_transaction_session_timeout=60000"
        for given in _query_values(parsed.query.get("options")):
            options = f"{options} {given}"
        args["options"] = options
    if pooler == "transaction":
        # Each transaction may run on another server connection: a statement psycopg
        # prepared on one is unknown to the next.
        args["prepare_threshold"] = None
    return args


def _query_values(value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _refuse_other_files(path: str, url: str) -> None:
    """Refuse a file that is not an SQLite database: SQLite would overwrite a short one.

    Only a file shorter than the smallest database page is opened here. Closing any
    descriptor of a file drops every POSIX lock this process holds on it, SQLite's too:
    reading a database that this process already has open (a second `Storage` on it)
    would let other processes checkpoint under its readers and corrupt what they read.
    SQLite itself refuses longer files that are not databases.
    """
    try:
        size = os.stat(path).st_size
    except OSError:
        return  # missing (SQLite creates it) or not a file (SQLite says why)
    if not 0 < size < _SQLITE_MIN_PAGE_SIZE:
        return
    try:
        with open(path, "rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except OSError:
        return
    if head != _SQLITE_MAGIC:
        raise StorageError(
            f"storage {url!r}: {path!r} is not an SQLite database, and pbtune will not "
            "overwrite it; name a new file or a pbtune database"
        )


def _tune_sqlite(engine: Engine, *, wal: bool) -> None:
    # pysqlite's own transaction handling defers BEGIN and cannot take the write lock up
    # front; pbtune emits BEGIN itself: IMMEDIATE for writes, so two workers never both
    # read the queue and then fight over upgrading to a write lock.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = "IMMEDIATE" if connection.get_execution_options().get("pbtune_write") else ""
        connection.exec_driver_sql(f"BEGIN {mode}".strip())
