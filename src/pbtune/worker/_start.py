"""How a run starts its worker processes: forked from a server that imported pbtune once.

A spawned worker is a fresh interpreter that imports pbtune (SQLAlchemy and NumPy: a few
tenths of a second) before it asks for its first trial, and a run starts all its workers
at once, so on a small machine they take turns at the same import. `multiprocessing`'s
forkserver starts one clean interpreter (no threads or CUDA of the run's, none of its
state), imports pbtune there once, and forks each worker from it in milliseconds; the
worker then imports the user's script and unpickles its function as a spawned one does.
The server lives as long as the process that runs studies: its next run starts at once.

What a forked worker does not get from the run, it is given: the run's environment as it
is at the start (`apply_environment`; the server's is from the moment it started), and
the run's process id to watch (its parent is the server). Spawn stays where a worker
must have its ``CUDA_VISIBLE_DEVICES`` before it imports the user's script (see
`visible_devices`: only a fresh interpreter can), and off Linux: macOS's system libraries
may start threads in the server (NumPy's BLAS), after which a fork can crash, which is
why Python spawns there by default; Windows has no forkserver.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections.abc import Mapping, Sequence
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
    if devices or not sys.platform.startswith("linux"):
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
    """Start the forkserver now, if the run's workers will fork from it, so that it
    imports pbtune while the run checks its arguments and reads the study (the
    first worker otherwise waits for that import). A server already running stays."""
    if worker_context(devices, url).get_start_method() == "forkserver":
        from multiprocessing import forkserver

        with children_ignore_sigint():  # the server and its workers start with it ignored
            forkserver.ensure_running()


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
