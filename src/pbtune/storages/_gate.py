"""A first-come write gate for an SQLite file shared by worker processes.

SQLite's busy handler makes a waiting writer sleep 1, 2, 5, 10, ... 100 ms between tries,
so a process that writes in a tight loop (fast trials) can take the lock again and again
while another waits: one worker's result is then recorded many trials late. The gate is
an exclusive ``flock`` taken before ``BEGIN IMMEDIATE``: the kernel wakes a blocked waiter
as soon as the holder lets go, so writers take turns.

The lock file lives beside the database, as SQLite's own ``-wal`` and ``-shm`` files do:
``study.db-pbtune.lock`` for ``study.db`` (by its real path, so two names of one file are
one gate). Every process that can write the database can make it there, whatever its
temporary folder (containers sharing a volume, another user, a private /tmp), and it goes
when the folder goes. A gate that is closed removes the file when no one holds it, so
nothing is left behind after a study but the database itself (after a crash, the one
small file stays until the next close).

Removing a lock file that others may have open is safe because of two rules: a file is
unlinked only by a process that holds its lock (and has checked that the path still
names it), and a process that takes the lock checks that the path still names the file
it locked, and otherwise opens the path again. While a holder's file is the one the path
names, nobody can unlink it (that needs its lock) or make a new one (the name is taken),
so two holders at once would have to hold one file's lock: the kernel forbids that.

Where the lock file cannot be made, SQLite's own locking alone serializes writes; the gate
is for fairness, never for correctness. A writer that is stopped (SIGSTOP) inside a
transaction holds the gate until it goes on or dies (the kernel drops its lock then), as
it would hold SQLite's own lock.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_log = logging.getLogger("pbtune.storage")
LOCK_SUFFIX = "-pbtune.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: SQLite's own locking only
    fcntl = None  # type: ignore[assignment]


class WriteGate:
    """Serializes write transactions on one SQLite file across threads and processes."""

    def __init__(self, database: str) -> None:
        self.path = os.path.realpath(database) + LOCK_SUFFIX
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
        while True:
            fd = self._open()
            if fd is None:
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self._names(fd):
                return
            # Another process removed the file (closing its gate) while this one waited:
            # the lock is on a file no one else will look at. Take the path's new file.
            self._forget()

    def _open(self) -> int | None:
        """This process's descriptor of the lock file, opened (made) if need be."""
        if self._fd is None or self._pid != os.getpid():
            # A forked child shares its parent's open file, and so its flock: it opens its own.
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as error:
                _log.debug("no write gate (%s); SQLite's locking alone", error)
                self._broken = True
                return None
            self._pid = os.getpid()
        return self._fd

    def _names(self, fd: int) -> bool:
        """Whether the lock file's path still names the file that ``fd`` is open on."""
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: go on (the gate is for fairness only)
        mine = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)

    def _forget(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops its lock too
        self._fd = None

    def _unlock_file(self) -> None:
        if fcntl is not None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock file, and remove it if no one holds it: another process that
        has it open notices when it next takes the gate (see the module's docstring)."""
        with self._threads:
            if self._fd is None or self._pid != os.getpid():
                self._fd = None  # a forked child's copy: the parent's to close
                return
            assert fcntl is not None
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pass  # held by another: it stays for them
            else:
                if self._names(self._fd):
                    try:
                        os.unlink(self.path)
                    except OSError as error:
                        _log.debug("write gate %s stays (%s)", self.path, error)
            self._forget()
