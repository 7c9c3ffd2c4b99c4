"""`RunMonitor`: what a user sees while `Study.optimize` or `Study.join` runs, and
when Ctrl-C stops it.

- On a terminal, the live progress bar (`ProgressDisplay`); elsewhere (a pipe, a file,
  `nohup`, a SLURM log, CI) a status line every `STATUS_EVERY_S` instead.
- A line per finished trial (`TrialLog`), on a terminal printed above the bar: the bar
  says how far the study is, the lines what happened to each trial (a failure, an
  exploit), which a user scrolls back to.
- Ctrl-C or SIGTERM: one line saying how many running trials were stopped (they are
  retried without using up ``max_retries``) and how to continue.
- The run's timeout: one line saying how many running trials were put back in the queue
  and how to continue.
- The run's callbacks, called with each trial that gets a line (`TrialLog`).

Everything goes through the ``pbtune`` logger (INFO; the interrupt at WARNING), so the
standard levels turn it down; ``show_progress=False`` turns off the bar and the status
lines.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

from pbtune._logging import (
    ensure_default_handler,
    mark_reported,
    trial_failures_said_by_the_run,
)
from pbtune.storages import Storage, StudyRecord
from pbtune.study._progress import ProgressDisplay, measure
from pbtune.study._report import READ_EVERY_S, Mine, TrialLog
from pbtune.study._text import counts_text, number, storage_text
from pbtune.trial import FrozenTrial, TrialState
from pbtune.worker import Deadline

_log = logging.getLogger("pbtune.study")

STATUS_EVERY_S = 60.0
BACKGROUND_EVERY_S = 0.5


class RunMonitor:
    """Watches one run of a study; ``tick`` is the backends' periodic call.

    ``bar=False`` never shows the live bar (`join`: workers of a cluster); ``mine``
    picks the trials that get a line; ``background=True`` ticks from a thread of its
    own, for a run whose worker loop has this process's main thread (`join` with one
    worker). ``callbacks`` is called with each trial that gets a line, at the end too
    (not after Ctrl-C). ``read_every_s``: how often it reads what finished.
    """

    def __init__(self, storage: Storage, study: StudyRecord, *, show_progress: bool | None,
                 bar: bool = True, mine: Mine | None = None, background: bool = False,
                 callbacks: Callable[[FrozenTrial], None] | None = None,
                 read_every_s: float = READ_EVERY_S) -> None:
        ensure_default_handler()
        self._storage = storage
        self._study = study
        self._trials = TrialLog(storage, study, mine=mine, notify=callbacks,
                                read_every_s=read_every_s)
        self._display = ProgressDisplay(storage, study,
                                        enabled=show_progress if bar else False,
                                        so_far=self._trials.so_far)
        self._status_lines = show_progress is not False and not self._display.enabled
        self._mine = mine
        self._started = time.monotonic()
        self._next_status = self._started + STATUS_EVERY_S
        # The lines say each failure: the in-process worker loops need not say it too.
        self._quiet_workers = trial_failures_said_by_the_run()
        self._stop = threading.Event()
        self._thread = (threading.Thread(target=self._tick_in_background,
                                         name="pbtune-monitor", daemon=True)
                        if background else None)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    def __enter__(self) -> RunMonitor:
        self._quiet_workers.__enter__()
        self._display.__enter__()
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join()
        try:
            if isinstance(error, KeyboardInterrupt):
                self._display.__exit__(kind, error, tb)
                self._interrupted(error)
                return
            try:
                self._trials.read()  # what finished since the last look, above the bar
            except Exception as failure:  # the run's own error, if any, is the one to see
                _log.debug("cannot read the study: %s", failure)
            finally:
                self._display.__exit__(kind, error, tb)
        finally:
            self._quiet_workers.__exit__(None, None, None)

    def tick(self) -> None:
        """Refresh the bar, log the trials that finished and, off a terminal, a status
        line now and then."""
        if isinstance(self._mine, LocalWorkers):
            self._mine.refresh()
        self._trials.poll()
        self._display.update()
        if self._status_lines and time.monotonic() >= self._next_status:
            self._next_status = time.monotonic() + STATUS_EVERY_S
            _log.info("%s", self.status_line())

    def status_line(self) -> str:
        """``study 'x': 120/400 steps (30%), trials: 2 running, ...; best so far: ...``
        (with several objectives ``front: ...`` instead of the best)."""
        progress = measure(self._storage, self._study, best=False)
        return (
            f"study {self._study.name!r}: {progress.steps_done}/{progress.steps_total} steps "
            f"({100 * progress.fraction:.0f}%), trials: {counts_text(progress.counts)}; "
            f"{self._trials.so_far()}; {_clock(self.elapsed_s)} elapsed"
        )

    def _tick_in_background(self) -> None:
        while not self._stop.wait(BACKGROUND_EVERY_S):
            try:
                self.tick()
            except Exception as error:  # a storage outage: the workers ride it out too
                _log.debug("cannot read the study: %s", error)

    def _interrupted(self, error: KeyboardInterrupt) -> None:
        """Log the one line that explains the stop, and mark ``error`` so that a script
        it ends prints no traceback (see `pbtune._logging.mark_reported`)."""
        try:
            read = self._trials.read(log=False)
            stopped: int | None = sum(t.state == TrialState.LOST for t in read)
        except (Exception, KeyboardInterrupt):  # the storage is unreachable; a second Ctrl-C
            stopped = None
        if stopped is None:
            what = "its running trials are retried on the next run"
        elif stopped:
            what = (f"{stopped} running trial(s) stopped; they are retried on the next run "
                    "and do not count as failures")
        else:
            what = "no trial was lost"
        how = "interrupted by SIGTERM" if error.args == ("SIGTERM",) else "interrupted"
        if storage_text(self._storage.url) == "memory":
            then = "an in-memory study ends with this process"
        else:
            then = f"run the same command again to continue study {self._study.name!r}"
        _log.warning("%s: %s; %s", how, what, then)
        mark_reported(error)

    def timed_out(self, deadline: Deadline, again: str) -> None:
        """Log the one line that says the run stopped at its ``deadline``, and ``again``:
        what continues the study."""
        back = deadline.put_back
        what = (f"{back} running trial(s) put back in the queue unchanged (a timeout does "
                "not wait for a segment to end); they run again from their start and do "
                "not count as failures" if back else "no trial was running")
        _log.warning("timeout of %s s passed: %s; %s to continue study %r",
                     number(deadline.timeout), what, again, self._study.name)


class LocalWorkers:
    """A `Mine` for `join`: the trials run by this process or its child processes (the
    worker ids are ``host:pid:tag``), so each `pbtune worker` logs its own trials."""

    def __init__(self) -> None:
        self._host = socket.gethostname()
        self._pids = {os.getpid()}

    def refresh(self) -> None:
        """Note the child processes alive now (call it while they run)."""
        self._pids.update(p.pid for p in multiprocessing.active_children() if p.pid)

    def __call__(self, trial: FrozenTrial) -> bool:
        self.refresh()
        host, _, rest = (trial.worker or "").partition(":")
        pid = rest.partition(":")[0]
        return host == self._host and pid.isdigit() and int(pid) in self._pids


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
