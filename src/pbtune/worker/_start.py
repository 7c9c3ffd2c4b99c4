"""How a run starts its worker processes: forked from a server that imported pbtune once.

A spawned worker is a fresh interpreter that imports pbtune (SQLAlchemy and NumPy: a few
tenths of a second) before it asks for its first trial, and a run starts all its workers
at once, so on a small machine they take turns at the same import. `multiprocessing`'s
forkserver starts one clean interpreter (no threads or CUDA of the run's, none of its
state), imports pbtune there once, and forks each worker from it in milliseconds; the
worker then imports the user's script and unpickles its function as a spawned one does.
The server lives as long as the process that runs studies: its next run starts at once.

What a forked worker does not get from the run, it is given: the run's environment as it
is when the worker starts (`apply_environment`, before the training function is loaded;
the user's script, imported before that, sees the server's, the run's environment when
the server started), and the run's process id to watch (its parent is the server).

Spawn stays where a worker must have its ``CUDA_VISIBLE_DEVICES`` before it imports the
user's script (see `visible_devices`: only a fresh interpreter can), and off Linux:
macOS's system libraries may start threads in the server (NumPy's BLAS), after which a
fork can crash, which is why Python spawns there by default; Windows has no forkserver.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pbtune.worker._devices import Devices
from pbtune.worker._signals import children_ignore_sigint

if TYPE_CHECKING:  # no forkserver on Windows: imported where it is used
    from multiprocessing.context import ForkServerContext, SpawnContext

# The module a worker's target lives in: all of pbtune a worker needs comes with it.
PRELOAD = "pbtune.worker._process"


def worker_context(devices: Sequence[Devices] | None = None, url: str | None = None
                   ) -> ForkServerContext | SpawnContext:
    """The forkserver, with pbtune and the database driver of ``url`` preloaded, or spawn
    where a worker needs its own devices from its first instruction on, or off Linux."""
    # -E and -I make the server ignore the PYTHONPATH that gives it this process's path.
    if devices or not sys.platform.startswith("linux") or sys.flags.ignore_environment:
        return mp.get_context("spawn")
    from multiprocessing import forkserver

    context = mp.get_context("forkserver")
    # Kept: modules that the user's own code asked the (one, shared) server to preload.
    # The list is read when the server starts; a server already running is used as it is.
    preload = list(getattr(forkserver._forkserver, "_preload_modules", None) or [])
    missing = [m for m in (PRELOAD, *driver_modules(url)) if m not in preload]
    if missing:
        context.set_forkserver_preload([*preload, *missing])
    return context


def start_server(devices: Sequence[Devices] | None, url: str | None) -> None:
    """Start the forkserver now, if the run's workers will fork from it (`optimize` calls
    this first, so that the server imports pbtune while the run checks its arguments and
    reads the study). A server already running stays, with the pbtune it imported."""
    if worker_context(devices, url).get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    # The server and its workers start with Ctrl-C ignored (see children_ignore_sigint).
    with _starting, children_ignore_sigint(), _this_import_path():
        forkserver.ensure_running()


_starting = threading.Lock()


@contextmanager
def _this_import_path() -> Iterator[None]:
    """``PYTHONPATH`` set to this process's ``sys.path`` while inside, for the server.

    Before Python 3.12.8 and 3.13.1 the server imports what it preloads with a path of
    its own (gh-117378): after a ``chdir``, a relative ``PYTHONPATH`` (``src``), or with
    a path the script added, it would preload another pbtune than the run's (an installed
    one) and fork workers that run it. Relative entries (``''``) are read from here.
    """
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        os.path.abspath(entry) for entry in sys.path if isinstance(entry, str))
    try:
        yield
    finally:
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous


def driver_modules(url: str | None) -> list[str]:
    """What a worker imports to open the database of ``url``: SQLAlchemy's dialect and
    the driver (psycopg takes about as long to import as the rest of a worker)."""
    if url is None:
        return []
    from sqlalchemy.engine import make_url

    try:
        dialect = make_url(url).get_dialect()
        return [dialect.__module__, dialect.import_dbapi().__name__]
    except Exception:  # a driver that will not load: the worker says so when it opens it
        return []


def apply_environment(environ: Mapping[str, str] | None) -> None:
    """Make this process's environment ``environ`` (the run's, when it started this one).

    A forked worker has its server's environment, as it was when the server started: a
    variable the run's process set since (an API key, ``monkeypatch.setenv`` in a test)
    would be missing, or stale, for the training function.
    """
    if environ is None or os.environ == environ:
        return
    for name in set(os.environ) - set(environ):
        del os.environ[name]
    os.environ.update(environ)
