"""`TrialLog`: a log line for each trial that finishes while a run watches its study.

Workers run in other processes, threads, Ray actors or machines, so the lines are not
written where trials run: the run's monitor reads the storage and logs what finished
since its last look. That works the same for every backend and for `pbtune worker`.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pbtune.storages import Storage, StudyRecord
from pbtune.study._progress import best_so_far
from pbtune.study._scores import Scores, front_text
from pbtune.study._text import number
from pbtune.trial import FrozenTrial, TrialState

_log = logging.getLogger("pbtune.study")

READ_EVERY_S = 0.5
# A `pbtune worker` looks less often: a cluster may run a thousand, and a look every half
# second each would keep every one's database connection open (see
# `pbtune.storages._lender`) and read the study's counts thousands of times a second.
WORKER_READ_EVERY_S = 5.0
ERROR_CHARS = 200

Mine = Callable[[FrozenTrial], bool]


class TrialLog:
    """Logs a line (INFO, logger ``pbtune.study``) per trial that finished since the
    last look: its metrics or error, what its member does next and the best so far
    (feasible trials first), or, with several objectives, the front of the members'
    latest trials.

    ``mine`` picks the trials to log (`pbtune worker` logs those its own workers ran);
    the best so far is over the whole study. Trials that had finished before the run
    get no line. ``notify`` is called with each trial that gets a line, after it (the
    run's callbacks), in order of completion.
    """

    def __init__(self, storage: Storage, study: StudyRecord, *, mine: Mine | None = None,
                 notify: Callable[[FrozenTrial], None] | None = None,
                 read_every_s: float = READ_EVERY_S) -> None:
        self._storage = storage
        self._read_every_s = read_every_s
        self._study = study
        self._mine = mine
        self._notify = notify
        self._scores = Scores.of(study.config)
        self._seen: set[int] = set()
        self._finished = -1
        self._best: FrozenTrial | None = None
        self._latest: dict[int, FrozenTrial] = {}  # each member's latest COMPLETE trial
        self._next_read = 0.0
        # Every trial read so far, by id; the ids of each member's trials in order; the
        # unfinished ones, read again at each look. A look reads only what changed.
        self._known: dict[int, FrozenTrial] = {}
        self._by_member: dict[int, list[int]] = {}
        self._unfinished: set[int] = set()
        self._highest = -1
        self.read(log=False)

    @property
    def best(self) -> FrozenTrial | None:
        """The best COMPLETE trial read so far (any step, any worker; None with several
        objectives)."""
        return self._best

    def front(self) -> list[FrozenTrial]:
        """The Pareto front of the members' latest COMPLETE trials read so far."""
        return self._scores.front(list(self._latest.values()))

    def so_far(self) -> str:
        """``best so far: accuracy (max) 0.93 (trial 5)``, or ``front: 3 trials (...)``."""
        if self._scores.several:
            return f"front: {front_text(self.front())}"
        return best_so_far(self._scores, self._best)

    def _standing(self) -> str:
        """The end of a finished trial's line: the best so far, or the front, as of now
        (the trials of one look are taken in the order they finished)."""
        if self._scores.several:
            return f"front: {front_text(self.front())}"
        best = self._best
        return "best so far: " + ("-" if best is None else (
            f"{number(best.fitness)} (trial {best.number}{self._scores.mark(best)})"))

    def poll(self) -> None:
        """Log what finished since the last look; at most every ``read_every_s``."""
        if time.monotonic() >= self._next_read:
            self.read()

    def read(self, *, log: bool = True) -> list[FrozenTrial]:
        """Read the trials that finished since the last look, log them and pass them to
        ``notify`` (``log``), and return them. A look reads the trials made since the
        last one and those it found unfinished, and only when the count of finished ones
        moved: its cost follows what happened, not the size of the study."""
        self._next_read = time.monotonic() + self._read_every_s
        counts = self._storage.count_states(self._study.id)
        finished = sum(count for state, count in counts.items() if not state.is_active)
        if finished == self._finished:
            return []
        self._finished = finished
        changed = self._storage.get_trials_since(self._study.id, self._highest,
                                                 self._unfinished)
        for trial in changed:
            if trial.id > self._highest:
                self._by_member.setdefault(trial.member, []).append(trial.id)
                self._highest = trial.id
            self._known[trial.id] = trial
            if trial.state.is_active:
                self._unfinished.add(trial.id)
            else:
                self._unfinished.discard(trial.id)
        new = sorted((t for t in changed if not t.state.is_active and t.id not in self._seen),
                     key=lambda t: (t.finished_at or 0.0, t.id))
        lines = _Lines(self._known, self._by_member, self._study, self._scores) if log else None
        for trial in new:
            self._seen.add(trial.number)
            if trial.state == TrialState.COMPLETE:
                self._latest[trial.member] = trial  # a member's trials finish in turn
                if not self._scores.several and self._scores.better(trial, self._best):
                    self._best = trial
            if lines is not None and (self._mine is None or self._mine(trial)):
                # a failed or lost trial is news a user may want even at WARNING
                level = logging.INFO if trial.state == TrialState.COMPLETE else logging.WARNING
                _log.log(level, "%s", lines.line(trial, self._standing()))
                if self._notify is not None:
                    self._notify(trial)
        return new


@dataclass
class _Lines:
    """The text of a finished trial's line, from the trials read so far: ``known`` by id,
    and the ids of each member's trials in order (``by_member``)."""

    known: Mapping[int, FrozenTrial]
    by_member: Mapping[int, Sequence[int]]
    study: StudyRecord
    scores: Scores

    def line(self, trial: FrozenTrial, standing: str) -> str:
        """The line of ``trial``; ``standing`` ends a COMPLETE one (the best so far)."""
        head = (f"trial {trial.number} (member {trial.member}, steps "
                f"{trial.start_step}-{trial.end_step})")
        then = f"next: {self._next(trial)}"
        if trial.state == TrialState.COMPLETE:
            scored = (self.scores.values(trial) if self.scores.several
                      else self._metrics(trial))
            return f"{head} finished: {scored}{self.scores.mark(trial)}; {then}; {standing}"
        if trial.state == TrialState.LOST:
            reason = _short(trial.error).removeprefix("lost: ")
            return f"{head} lost ({reason}); {then}"
        if trial.state == TrialState.FAILED:
            failures = self._failures_in_a_row(trial)
            limit = self.study.config.get("max_retries")
            return (f"{head} failed: {_short(trial.error)} (failure {failures} in a row, "
                    f"max_retries={limit}); {then}")
        return f"{head} {trial.state.value.lower()}; {then}"

    def _metrics(self, trial: FrozenTrial) -> str:
        metric = self.study.config.get("metric")
        metrics = trial.metrics or {}
        label = self.scores.fitness_label
        if metric and metric in metrics and metrics[metric] == trial.fitness:
            return f"{label} {number(trial.fitness)}"
        shown = ", ".join(f"{k} {number(v)}" for k, v in list(metrics.items())[:3])
        return f"{label} {number(trial.fitness)} ({shown})"

    def _next(self, trial: FrozenTrial) -> str:
        """What the trial's member does next: the decision recorded with its next trial."""
        ids = self.by_member.get(trial.member, [])
        after = ids[bisect.bisect_right(ids, trial.id):]
        if not after:
            if trial.state == TrialState.COMPLETE and trial.end_step >= int(
                    self.study.config["max_steps"]):
                return f"member {trial.member} reached max_steps"
            if trial.state == TrialState.COMPLETE:  # told after the study ended
                return "nothing, the study has ended"
            return f"member {trial.member} stops"
        following = self.known[after[0]]
        parent = self.known.get(following.parent_id) if following.parent_id is not None else None
        if following.decision == "exploit" and parent is not None:
            return (f"exploit trial {parent.number} (member {parent.member}) as trial "
                    f"{following.number}")
        if following.decision == "restart" and parent is not None:
            # the member stayed at the bottom (early stop): its slot starts over from a copy
            return (f"restart from trial {parent.number} (member {parent.member}) as trial "
                    f"{following.number}")
        return f"{following.decision} as trial {following.number}"

    def _failures_in_a_row(self, trial: FrozenTrial) -> int:
        """The member's failures in a row up to ``trial``: lost trials do not count, a
        COMPLETE one starts the count again (as the controller's retry count does)."""
        count = 0
        ids = self.by_member.get(trial.member, [])
        for trial_id in reversed(ids[:bisect.bisect_right(ids, trial.id)]):
            earlier = self.known[trial_id]
            if earlier.state == TrialState.LOST:
                continue
            if earlier.state != TrialState.FAILED:
                break
            count += 1
        return count


def _short(error: str | None) -> str:
    """The last line of an error (a traceback's exception), at most `ERROR_CHARS`."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    text = lines[-1] if lines else "no error text"
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."
