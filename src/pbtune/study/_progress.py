"""How far a study is (`measure`), and the live progress bar while `Study.optimize`
runs on a terminal (off a terminal, `RunMonitor` logs status lines instead)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from pbtune.storages import Storage, StudyRecord
from pbtune.study._best import best_by, best_on
from pbtune.study._scores import Scores, criteria_of, front_text
from pbtune.study._text import counts_text
from pbtune.study._text import number as _number
from pbtune.trial import FrozenTrial, TrialState

if TYPE_CHECKING:  # rich is imported when a display is made: worker processes never need it
    from rich.console import Console
    from rich.live import Live

REFRESH_S = 0.5


@dataclass(frozen=True)
class StudyProgress:
    """How far a study is: steps done of the total, trials by state, the best fitness."""

    steps_done: int
    steps_total: int
    counts: dict[TrialState, int]
    best_fitness: float | None

    @property
    def fraction(self) -> float:
        return self.steps_done / self.steps_total if self.steps_total else 1.0


def best_trial(storage: Storage, study: StudyRecord) -> FrozenTrial | None:
    """The best of the final population: the COMPLETE trial with the best fitness among
    those that reached ``max_steps``; before any has, the best so far. With constraints,
    the feasible trials first. None for a study of several objectives (see `front`)."""
    criteria = criteria_of(study.config)
    if criteria.several:
        return None
    mode = str(study.config["mode"])
    max_steps = int(study.config["max_steps"])
    if not criteria.plain:  # constrained: ranked here, over the final trials if any
        done = storage.get_trials(study.id, [TrialState.COMPLETE])
        final = [t for t in done if t.end_step >= max_steps] or done
        return best_by(final, lambda t: t.fitness, criteria.objectives[0][1],
                       criteria.constraints)
    best = storage.best_trial(study.id, mode, min_end_step=max_steps)
    return best or storage.best_trial(study.id, mode)


def front(storage: Storage, study: StudyRecord) -> list[FrozenTrial]:
    """The Pareto front of the members' latest COMPLETE trials (their final ones once the
    study is COMPLETE), by trial number; with one objective, the best trial."""
    criteria = criteria_of(study.config)
    if not criteria.several:
        best = best_trial(storage, study)
        return [best] if best is not None else []
    return criteria.front(storage.get_population(study.id))


def default_trial(storage: Storage, study: StudyRecord) -> FrozenTrial | None:
    """The trial whose lineage and schedule the views show unless told another: the best
    trial; in a study of several objectives, the best of the members' final trials on the
    first objective (a trial of the front)."""
    criteria = criteria_of(study.config)
    if not criteria.several:
        return best_trial(storage, study)
    return best_on(criteria, storage.get_population(study.id), criteria.names[0])


def so_far_text(storage: Storage, study: StudyRecord) -> str:
    """``best so far: accuracy (max) 0.93 (trial 5)``, over every COMPLETE trial at any
    step (feasible ones first); with several objectives, the front of the members' latest
    trials: ``front: 3 trials (trials 4, 7, 9)``."""
    scores = Scores.of(study.config)
    if scores.several:
        return f"front: {front_text(front(storage, study))}"
    if scores.constrained:  # ranked here: the storage orders by fitness alone
        done = storage.get_trials(study.id, [TrialState.COMPLETE])
        best = best_by(done, lambda t: t.fitness, scores.criteria.objectives[0][1],
                       scores.criteria.constraints)
    else:
        best = storage.best_trial(study.id, str(study.config.get("mode", "max")))
    return best_so_far(scores, best)


def best_so_far(scores: Scores, best: FrozenTrial | None) -> str:
    """``best so far: accuracy (max) 0.93 (trial 5)`` (``-`` before any), marked when
    the best breaks a constraint (no trial is feasible yet)."""
    so_far = "-" if best is None else (
        f"{_number(best.fitness)} (trial {best.number}{scores.mark(best)})")
    return f"best so far: {scores.fitness_label} {so_far}"


def measure(storage: Storage, study: StudyRecord, *, best: bool = True) -> StudyProgress:
    """Steps done, trial counts and (``best``) the best fitness of the study now."""
    config = study.config
    max_steps = int(config["max_steps"])
    # Steps that trained to completion: each member's latest COMPLETE trial's end. A
    # member that gave up after failures counts as far as it got, not as done.
    latest = {t.member: t.end_step for t in storage.get_population(study.id)}
    done = sum(min(end, max_steps) for end in latest.values())
    found = best_trial(storage, study) if best else None
    return StudyProgress(
        steps_done=done,
        steps_total=max_steps * int(config["population_size"]),
        counts=storage.count_states(study.id),
        best_fitness=found.fitness if found is not None else None,
    )


class ProgressDisplay:
    """A rich progress bar of steps, with the best fitness so far (over every COMPLETE
    trial, at any step: the final best is the best at ``max_steps``), or the front of a
    study of several objectives, and the trial counts of every state.

    ``so_far`` gives that text (a run's `TrialLog` knows it without a query); by default
    it is read from the storage (`so_far_text`)."""

    def __init__(self, storage: Storage, study: StudyRecord, *, enabled: bool | None = None,
                 console: Console | None = None,
                 so_far: Callable[[], str] | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        self._storage = storage
        self._study = study
        self._so_far = so_far or (lambda: so_far_text(storage, study))
        self._console = console or Console(stderr=True)
        self.enabled = self._console.is_terminal if enabled is None else enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self._console,
        )
        self._task = self._progress.add_task(study.name, total=1)
        self._status = Text("")
        self._live: Live | None = None
        self._last = 0.0

    def __enter__(self) -> ProgressDisplay:
        if self.enabled:
            from rich.console import Group
            from rich.live import Live

            self._live = Live(Group(self._progress, self._status), console=self._console,
                              refresh_per_second=4, transient=False)
            self._live.__enter__()
            self.update(force=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self.update(force=True)
            self._live.__exit__(kind, error, tb)
            self._live = None

    def update(self, *, force: bool = False) -> None:
        if self._live is None:
            return
        now = time.monotonic()
        if not force and now - self._last < REFRESH_S:
            return
        self._last = now
        state = measure(self._storage, self._study, best=False)
        self._status.plain = f"  {self._so_far()} | trials: {counts_text(state.counts)}"
        self._progress.update(self._task, total=state.steps_total, completed=state.steps_done)
