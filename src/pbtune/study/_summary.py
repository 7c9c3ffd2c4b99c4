"""`StudySummary`: what a run ends with (returned by `Study.optimize`, printed by
`pbtune run`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbtune._logging import SUMMARY
from pbtune.storages import Storage, StudyRecord, StudyState
from pbtune.study._progress import best_trial, front, measure
from pbtune.study._scores import Scores
from pbtune.study._text import counts_text, fitness_label, next_commands, number, storage_text
from pbtune.trial import FrozenTrial, TrialState

SUMMARY_EXTRA = {SUMMARY: True}  # marks the logged summary (`pbtune run` prints its own)
FRONT_LINES = 5  # trials of the front the text lists


@dataclass(frozen=True)
class StudySummary:
    """Where a study stands after a run: `Study.optimize` returns it and logs its text.

    ``best_trial`` is the study's best (see `Study.best_trial`): the best of the final
    population once a member reached ``max_steps`` (``at_max_steps``), else the best so
    far; ``checkpoint`` is its committed checkpoint, the trained model. ``counts`` has
    every trial state; ``elapsed_s`` is how long this run took (0 when there was nothing
    left to run); ``stop_reason`` says why the study ended before its budget (a stop
    rule, `Study.stop`), None if it did not; ``timeout_s`` is the timeout the run stopped
    at, leaving the study unfinished (None when it did not).

    A study of several objectives has no best trial (``best_trial`` is None): ``front``
    holds its Pareto front (see `Study.best_trials`), and the text lists it.
    """

    name: str
    storage_url: str | None
    state: StudyState
    best_trial: FrozenTrial | None
    steps_done: int
    steps_total: int
    counts: dict[TrialState, int]
    elapsed_s: float
    fitness_label: str = "fitness (max)"
    max_steps: int = 0
    commands: list[str] = field(default_factory=list)
    stop_reason: str | None = None
    timeout_s: float | None = None
    front: list[FrozenTrial] = field(default_factory=list)
    scores: Scores | None = None

    @property
    def fitness(self) -> float | None:
        return self.best_trial.fitness if self.best_trial is not None else None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.best_trial.params) if self.best_trial is not None else {}

    @property
    def checkpoint(self) -> Path | str | None:
        return self.best_trial.checkpoint if self.best_trial is not None else None

    @property
    def at_max_steps(self) -> bool:
        return self.best_trial is not None and self.best_trial.end_step >= self.max_steps

    def __str__(self) -> str:
        percent = 100 * self.steps_done / self.steps_total if self.steps_total else 100.0
        lines = [
            f"study {self.name!r} {self.state.value} in {storage_text(self.storage_url)}: "
            f"{self.steps_done}/{self.steps_total} steps ({percent:.0f}%) "
            f"in {self.elapsed_s:.1f} s",
            f"trials: {counts_text(self.counts)}",
        ]
        if self.stop_reason is not None:
            lines.insert(1, f"stopped: {self.stop_reason}")
        best = self.best_trial
        mark = self.scores.mark(best) if self.scores and best else ""
        if self.scores is not None and self.scores.several:
            lines += self._front_lines(self.scores)
        elif best is None:
            lines.append("best: no trial has completed yet")
        else:
            where = "best at max_steps" if self.at_max_steps else "best so far"
            lines += [
                f"{where}: {self.fitness_label} {number(best.fitness)}{mark}, trial "
                f"{best.number} (member {best.member}, steps {best.start_step}-{best.end_step})",
                f"  params: {', '.join(f'{k}={number(v)}' for k, v in best.params.items())}",
                f"  checkpoint (the trained model): {best.checkpoint or '-'}",
            ]
        if self.state == StudyState.RUNNING:
            stopped = ("" if self.timeout_s is None else
                       f"the run stopped at its timeout ({number(self.timeout_s)} s); ")
            again = ("call optimize again" if storage_text(self.storage_url) == "memory"
                     else "run the same command again")
            lines.append(f"{stopped}the study is unfinished: {again} to continue it")
        if self.commands:
            lines.append("next:")
            lines += [f"  {command}" for command in self.commands]
        elif storage_text(self.storage_url) == "memory":
            what = ("study.best_trials, study.schedule(trial_id)"
                    if self.scores is not None and self.scores.several
                    else "study.best_trial, study.schedule()")
            lines.append(f"an in-memory study ends with this process: read it now ({what})")
        return "\n".join(lines)

    def _front_lines(self, scores: Scores) -> list[str]:
        """The front of a study of several objectives: a line per trial, at most
        `FRONT_LINES`."""
        if not self.front:
            return ["front: no trial has completed yet"]
        final = all(t.end_step >= self.max_steps for t in self.front)
        count = f"{len(self.front)} trial{'s' if len(self.front) != 1 else ''}"
        bounds = f"; constraints {scores.constraints_text()}" if scores.constrained else ""
        lines = [f"{'front at max_steps' if final else 'front so far'}: {count} "
                 f"({scores.label()}{bounds})"]
        for trial in self.front[:FRONT_LINES]:
            values = ", ".join(f"{name} {number(value)}"
                               for name, value in scores.objective_values(trial).items())
            lines.append(f"  trial {trial.number} (member {trial.member}, steps "
                         f"{trial.start_step}-{trial.end_step}): {values}{scores.mark(trial)}")
        if len(self.front) > FRONT_LINES:
            lines.append(f"  ... {len(self.front) - FRONT_LINES} more (study.best_trials, "
                         "pbtune best)")
        return lines


def summarize(storage: Storage, record: StudyRecord, elapsed_s: float, *,
              timeout_s: float | None = None) -> StudySummary:
    """The summary of the study ``record`` names, read from ``storage`` now; ``timeout_s``:
    the timeout the run stopped at."""
    record = storage.get_study_by_id(record.id)
    progress = measure(storage, record)
    scores = Scores.of(record.config)
    return StudySummary(
        name=record.name,
        storage_url=storage.url,
        state=record.state,
        best_trial=best_trial(storage, record),
        steps_done=progress.steps_done,
        steps_total=progress.steps_total,
        counts=dict(progress.counts),
        elapsed_s=elapsed_s,
        fitness_label=scores.label() if scores.several else fitness_label(record.config),
        max_steps=int(record.config["max_steps"]),
        commands=next_commands(storage.url, record.name, several=scores.several),
        stop_reason=record.stop_reason,
        timeout_s=timeout_s if record.state == StudyState.RUNNING else None,
        front=front(storage, record) if scores.several else [],
        scores=scores,
    )


def nothing_left(name: str, stop_reason: str | None) -> str:
    """What `optimize` says of a study that is COMPLETE already."""
    if stop_reason is None:
        return f"study {name!r} is COMPLETE: nothing left to run"
    return (f"study {name!r} stopped: {stop_reason}; nothing left to run. To go on, raise "
            "its max_steps (study.extend, or in its study file) or, where a stop rule "
            "ended it, change its rules (create_study(..., load_if_exists=True, stop=...), "
            "or its study file's stop:)")
