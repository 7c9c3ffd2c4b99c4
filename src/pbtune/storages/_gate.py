"""A first-come write gate for an SQLite file shared by worker processes.

SQLite's busy handler makes a waiting writer sleep 1, 2, 5, 10, ... 100 ms between tries,
so a process that writes in a tight loop (fast trials) can take the lock again and again
while another waits: one worker's result is then recorded many trials late. The gate is
an exclusive ``flock`` taken before ``BEGIN IMMEDIATE``: the kernel wakes a blocked waiter
as soon as the holder lets go, so writers take turns.

The lock file lives in the temporary directory, named after the database's real path
(an SQLite storage is shared by the processes of one machine): nothing is written beside
the database. Where it cannot be made, SQLite's own locking alone serializes writes; the
gate is for fairness, never for correctness.

A writer that is stopped (SIGSTOP) inside a transaction holds the gate until it goes on
or dies (the kernel drops its lock then), as it would hold SQLite's own lock.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_log = logging.getLogger("pbtune.storage")


def _lock_dir() -> str:
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"pbtune-{user}")

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: SQLite's own locking only
    fcntl = None  # type: ignore[assignment]


class WriteGate:
    """Serializes write transactions on one SQLite file across threads and processes."""

    def __init__(self, database: str) -> None:
        digest = hashlib.sha256(os.path.realpath(database).encode()).hexdigest()[:32]
        self.path = os.path.join(_lock_dir(), f"{digest}.lock")
        self._broken = False
        self._threads = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._threads:
            outermost = self._depth == 0
            if outermost:
                self._lock_file()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if outermost:
                    self._unlock_file()

    def _lock_file(self) -> None:
        if fcntl is None or self._broken:
            return
        if self._fd is None or self._pid != os.getpid():
            # A forked child shares its parent's open file, and so its flock: it opens its own.
            try:
                os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as error:
                _log.debug("no write gate (%s); SQLite's locking alone", error)
                self._broken = True
                return
            self._pid = os.getpid()
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def _unlock_file(self) -> None:
        if fcntl is not None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._threads:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None
