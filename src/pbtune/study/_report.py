"""`TrialLog`: a log line for each trial that finishes while a run watches its study.

Workers run in other processes, threads, Ray actors or machines, so the lines are not
written where trials run: the run's monitor reads the storage and logs what finished
since its last look. That works the same for every backend and for `pbtune worker`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pbtune.storages import Storage, StudyRecord
from pbtune.study._text import fitness_label, is_lost, number
from pbtune.trial import FrozenTrial, TrialState

_log = logging.getLogger("pbtune.study")

READ_EVERY_S = 0.5
# A look that reads every trial is put off until this many times its cost has passed,
# so a study of 1e5 trials costs its monitor a few percent, never its whole time.
READ_COST_FACTOR = 20.0
ERROR_CHARS = 200

Mine = Callable[[FrozenTrial], bool]


class TrialLog:
    """Logs a line (INFO, logger ``pbtune.study``) per trial that finished since the
    last look: its metrics or error, what its member does next and the best so far.

    ``mine`` picks the trials to log (`pbtune worker` logs those its own workers ran);
    the best so far is over the whole study. Trials that had finished before the run
    get no line.
    """

    def __init__(self, storage: Storage, study: StudyRecord, *, mine: Mine | None = None
                 ) -> None:
        self._storage = storage
        self._study = study
        self._mine = mine
        self._max = str(study.config.get("mode", "max")) == "max"
        self._seen: set[int] = set()
        self._finished = -1
        self._best: FrozenTrial | None = None
        self._next_read = 0.0
        self.read(log=False)

    @property
    def best(self) -> FrozenTrial | None:
        """The best COMPLETE trial read so far (any step, any worker)."""
        return self._best

    def poll(self) -> None:
        """Log what finished since the last look; at most every `READ_EVERY_S`."""
        if time.monotonic() >= self._next_read:
            self.read()

    def read(self, *, log: bool = True) -> list[FrozenTrial]:
        """Read the trials that finished since the last look, log them (``log``) and
        return them. Every trial is read only when the count of finished ones moved."""
        started = time.monotonic()
        counts = self._storage.count_states(self._study.id)
        finished = sum(count for state, count in counts.items() if not state.is_active)
        if finished == self._finished:
            self._next_read = started + READ_EVERY_S
            return []
        trials = self._storage.get_trials(self._study.id)
        cost = time.monotonic() - started
        self._next_read = started + max(READ_EVERY_S, READ_COST_FACTOR * cost)
        self._finished = finished
        new = sorted((t for t in trials if not t.state.is_active and t.number not in self._seen),
                     key=lambda t: (t.finished_at or 0.0, t.number))
        lines = _Lines(trials, self._study) if log else None
        for trial in new:
            self._seen.add(trial.number)
            if trial.state == TrialState.COMPLETE and self._better(trial):
                self._best = trial
            if lines is not None and (self._mine is None or self._mine(trial)):
                # a failed or lost trial is news a user may want even at WARNING
                level = logging.INFO if trial.state == TrialState.COMPLETE else logging.WARNING
                _log.log(level, "%s", lines.line(trial, self._best))
        return new

    def _better(self, trial: FrozenTrial) -> bool:
        if trial.fitness is None:
            return False
        if self._best is None or self._best.fitness is None:
            return True
        if self._max:
            return trial.fitness > self._best.fitness
        return trial.fitness < self._best.fitness


@dataclass
class _Lines:
    """The text of a finished trial's line, from one read of the study's trials."""

    trials: Sequence[FrozenTrial]
    study: StudyRecord

    def __post_init__(self) -> None:
        self._by_id = {t.id: t for t in self.trials}
        self._by_member: dict[int, list[FrozenTrial]] = {}
        for trial in self.trials:  # in the order of their numbers
            self._by_member.setdefault(trial.member, []).append(trial)

    def line(self, trial: FrozenTrial, best: FrozenTrial | None) -> str:
        head = (f"trial {trial.number} (member {trial.member}, steps "
                f"{trial.start_step}-{trial.end_step})")
        then = f"next: {self._next(trial)}"
        if trial.state == TrialState.COMPLETE:
            so_far = "-" if best is None else (
                f"{number(best.fitness)} (trial {best.number})")
            return (f"{head} finished: {self._metrics(trial)}; {then}; best so far: "
                    f"{so_far}")
        if is_lost(trial):
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
        if metric and metric in metrics and metrics[metric] == trial.fitness:
            return f"{fitness_label(self.study.config)} {number(trial.fitness)}"
        shown = ", ".join(f"{k} {number(v)}" for k, v in list(metrics.items())[:3])
        return f"{fitness_label(self.study.config)} {number(trial.fitness)} ({shown})"

    def _next(self, trial: FrozenTrial) -> str:
        """What the trial's member does next: the decision recorded with its next trial."""
        after = [t for t in self._by_member.get(trial.member, []) if t.number > trial.number]
        if not after:
            if trial.state == TrialState.COMPLETE and trial.end_step >= int(
                    self.study.config["max_steps"]):
                return f"member {trial.member} reached max_steps"
            return f"member {trial.member} stops"
        following = after[0]
        parent = self._by_id.get(following.parent_id) if following.parent_id is not None else None
        if following.decision == "exploit" and parent is not None:
            return (f"exploit trial {parent.number} (member {parent.member}) as trial "
                    f"{following.number}")
        return f"{following.decision} as trial {following.number}"

    def _failures_in_a_row(self, trial: FrozenTrial) -> int:
        """The member's failures in a row up to ``trial``: lost trials do not count, a
        COMPLETE one starts the count again (as the controller's retry count does)."""
        count = 0
        for earlier in reversed(self._by_member.get(trial.member, [])):
            if earlier.number > trial.number or is_lost(earlier):
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
