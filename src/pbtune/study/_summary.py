"""`StudySummary`: what a run ends with (returned by `Study.optimize`, printed by
`pbtune run`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbtune._logging import SUMMARY
from pbtune.storages import Storage, StudyRecord, StudyState
from pbtune.study._progress import best_trial, measure
from pbtune.study._text import counts_text, fitness_label, next_commands, number, storage_text
from pbtune.trial import FrozenTrial, TrialState

SUMMARY_EXTRA = {SUMMARY: True}  # marks the logged summary (`pbtune run` prints its own)


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
        if best is None:
            lines.append("best: no trial has completed yet")
        else:
            where = "best at max_steps" if self.at_max_steps else "best so far"
            lines += [
                f"{where}: {self.fitness_label} {number(best.fitness)}, trial {best.number} "
                f"(member {best.member}, steps {best.start_step}-{best.end_step})",
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
            lines.append("an in-memory study ends with this process: read it now "
                         "(study.best_trial, study.schedule())")
        return "\n".join(lines)


def summarize(storage: Storage, record: StudyRecord, elapsed_s: float, *,
              timeout_s: float | None = None) -> StudySummary:
    """The summary of the study ``record`` names, read from ``storage`` now; ``timeout_s``:
    the timeout the run stopped at."""
    record = storage.get_study_by_id(record.id)
    progress = measure(storage, record)
    return StudySummary(
        name=record.name,
        storage_url=storage.url,
        state=record.state,
        best_trial=best_trial(storage, record),
        steps_done=progress.steps_done,
        steps_total=progress.steps_total,
        counts=dict(progress.counts),
        elapsed_s=elapsed_s,
        fitness_label=fitness_label(record.config),
        max_steps=int(record.config["max_steps"]),
        commands=next_commands(storage.url, record.name),
        stop_reason=record.stop_reason,
        timeout_s=timeout_s if record.state == StudyState.RUNNING else None,
    )


def nothing_left(name: str, stop_reason: str | None) -> str:
    """What `optimize` says of a study that is COMPLETE already."""
    if stop_reason is None:
        return f"study {name!r} is COMPLETE: nothing left to run"
    return (f"study {name!r} stopped: {stop_reason}; nothing left to run. To go on, raise "
            "its max_steps (study.extend, or in its study file) or, where a stop rule "
            "ended it, change its rules (create_study(..., load_if_exists=True, stop=...), "
            "or its study file's stop:)")
