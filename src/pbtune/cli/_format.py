"""Turning trials, schedules and study progress into rich tables, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from pbtune.storages import StudyRecord
from pbtune.study import Scores, StudyProgress, fitness_label, front_text
from pbtune.trial import FrozenTrial, Segment, TrialState

_STATE_STYLE = {
    TrialState.QUEUED: "dim",
    TrialState.RUNNING: "cyan",
    TrialState.TRAINED: "yellow",
    TrialState.EVALUATING: "magenta",
    TrialState.COMPLETE: "green",
    TrialState.FAILED: "red",
    TrialState.LOST: "bright_black",
}


def number(value: Any) -> str:
    """A short form of a value for tables: floats to 6 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={number(value)}" for name, value in params.items())


def last_line(text: str | None) -> str:
    """The last non-empty line of an error text (for a traceback: the exception)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "-"


def trial_dict(trial: FrozenTrial, scores: Scores | None = None) -> dict[str, Any]:
    """A trial as plain JSON data; with ``scores`` of several objectives, their values
    (``objectives``), and with constraints, ``violation`` (0: feasible) and ``feasible``
    (None while unfinished)."""
    extra: dict[str, Any] = {}
    if scores is not None and scores.several:
        extra["objectives"] = scores.objective_values(trial)
    if scores is not None and scores.constrained:
        violation = scores.violation(trial) if trial.metrics is not None else None
        extra.update(violation=violation, feasible=None if violation is None else violation == 0)
    return {
        "id": trial.id,
        "member": trial.member,
        "generation": trial.generation,
        "parent_id": trial.parent_id,
        "start_step": trial.start_step,
        "end_step": trial.end_step,
        "state": trial.state.value,
        "fitness": trial.fitness,
        "metrics": trial.metrics,
        "params": trial.params,
        "decision": trial.decision,
        "error": trial.error,
        "checkpoint": str(trial.checkpoint) if trial.checkpoint is not None else None,
        "worker": trial.worker,
        "created_at": trial.created_at,
        "started_at": trial.started_at,
        "finished_at": trial.finished_at,
        **extra,
    }


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, allow_nan=True)


def feasible_text(trial: FrozenTrial, scores: Scores) -> Text:
    """``yes``, or ``no: memory_mb 2600 > 2048`` in red; ``-`` while unfinished."""
    if trial.metrics is None:
        return Text("-")
    broken = scores.broken(trial)
    return Text(f"no: {broken}", style="red") if broken else Text("yes")


def _score_columns(table: Table, scores: Scores | None) -> None:
    """The fitness column, or one per objective; and ``feasible`` with constraints."""
    if scores is None or not scores.several:
        table.add_column("fitness", justify="right", no_wrap=True)
    else:
        for name, mode in scores.criteria.objectives:
            table.add_column(f"{name} ({mode})", justify="right", no_wrap=True)
    if scores is not None and scores.constrained:
        table.add_column("feasible", overflow="fold")


def _score_cells(trial: FrozenTrial, scores: Scores | None) -> list[Any]:
    if scores is None or not scores.several:
        cells: list[Any] = [number(trial.fitness)]
    else:
        cells = [number(v) for v in scores.objective_values(trial).values()]
    if scores is not None and scores.constrained:
        cells.append(feasible_text(trial, scores))
    return cells


# -- trials ------------------------------------------------------------------------------------
def trials_table(trials: Sequence[FrozenTrial], title: str | None = None,
                 scores: Scores | None = None) -> Table:
    """A row per trial; its fitness, or (``scores`` of several objectives) a column per
    objective, and whether it is feasible when the study has constraints."""
    table = Table(title=title, title_justify="left")
    for name in ("id", "member", "gen", "parent", "steps"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    _score_columns(table, scores)
    table.add_column("params", overflow="fold")
    for trial in trials:
        table.add_row(
            str(trial.id),
            str(trial.member),
            str(trial.generation),
            number(trial.parent_id),
            f"{trial.start_step}-{trial.end_step}",
            Text(trial.state.value, style=_STATE_STYLE[trial.state]),
            *_score_cells(trial, scores),
            params_text(trial.params),
        )
    return table


def trials_csv(trials: Sequence[FrozenTrial], params: Sequence[str],
               scores: Scores | None = None) -> str:
    """One row per trial; params as ``params.NAME`` and metrics as ``metrics.NAME`` columns
    (a study's objectives are metrics); with constraints, a ``violation`` column."""
    metrics: list[str] = []
    for trial in trials:
        metrics.extend(m for m in (trial.metrics or {}) if m not in metrics)
    fixed = ["id", "member", "generation", "parent_id", "start_step", "end_step",
             "state", "fitness", "decision"]
    if scores is not None and scores.constrained:
        fixed.append("violation")
    rows = []
    for trial in trials:
        record = trial_dict(trial, scores)
        row = [record[key] for key in fixed]
        row += [trial.params.get(name) for name in params]
        row += [(trial.metrics or {}).get(name) for name in metrics]
        rows.append(row)
    header = fixed + [f"params.{p}" for p in params] + [f"metrics.{m}" for m in metrics]
    return _csv(header, rows)


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if value is None else value for value in row])
    return buffer.getvalue()


# -- the best trials --------------------------------------------------------------------------
def front_table(front: Sequence[FrozenTrial], scores: Scores, title: str) -> Table:
    """The Pareto front (``pbtune best`` of a study of several objectives): a row per
    trial with each objective, whether it is feasible (with constraints) and its params."""
    table = Table(title=title, title_justify="left")
    for name in ("trial", "member", "steps"):
        table.add_column(name, justify="right", no_wrap=True)
    _score_columns(table, scores)
    table.add_column("params", overflow="fold")
    for trial in front:
        table.add_row(str(trial.number), str(trial.member),
                      f"{trial.start_step}-{trial.end_step}", *_score_cells(trial, scores),
                      params_text(trial.params))
    return table


def front_csv(front: Sequence[FrozenTrial], scores: Scores, params: Sequence[str]) -> str:
    """The best trials, a row each: ``trial``, ``member``, the steps, the fitness (or a
    column per objective), ``feasible`` and ``violation`` with constraints, then the
    params as ``params.NAME`` and the checkpoint."""
    names = list(scores.criteria.names) if scores.several else ["fitness"]
    bounds = ["feasible", "violation"] if scores.constrained else []
    header = ["trial", "member", "start_step", "end_step", *names, *bounds,
              *(f"params.{p}" for p in params), "checkpoint"]
    rows = []
    for trial in front:
        values = (list(scores.objective_values(trial).values()) if scores.several
                  else [trial.fitness])
        violation = scores.violation(trial)
        rows.append([trial.number, trial.member, trial.start_step, trial.end_step, *values,
                     *([violation == 0, violation] if bounds else []),
                     *(trial.params.get(p) for p in params),
                     str(trial.checkpoint) if trial.checkpoint is not None else None])
    return _csv(header, rows)


# -- one trial ---------------------------------------------------------------------------------
def trial_table(trial: FrozenTrial, title: str, scores: Scores | None = None) -> Table:
    """A key/value table of one trial (``pbtune best``)."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("trial", str(trial.id))
    table.add_row("member", str(trial.member))
    table.add_row("generation", str(trial.generation))
    table.add_row("parent", number(trial.parent_id))
    table.add_row("steps", f"{trial.start_step}-{trial.end_step}")
    table.add_row("state", trial.state.value)
    table.add_row("fitness", number(trial.fitness))
    if scores is not None and scores.constrained:
        table.add_row("feasible", feasible_text(trial, scores))
    for name, value in (trial.metrics or {}).items():
        table.add_row(f"metric {name}", number(value))
    for name, value in trial.params.items():
        table.add_row(f"param {name}", number(value))
    table.add_row("checkpoint", str(trial.checkpoint) if trial.checkpoint else "-")
    return table


# -- schedules (their files: pbtune.study.schedule_json and schedule_csv) ----------------------
def schedule_table(segments: Sequence[Segment], metrics: Sequence[Mapping[str, float]]) -> Table:
    """The segments of a replay with the metrics each one returned."""
    table = Table(title="replay", title_justify="left")
    table.add_column("segment", justify="right", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True)
    table.add_column("params", overflow="fold")
    table.add_column("metrics", overflow="fold")
    for index, (segment, values) in enumerate(zip(segments, metrics, strict=True)):
        table.add_row(str(index), f"{segment.start_step}-{segment.end_step}",
                      params_text(segment.params), params_text(values))
    return table


# -- studies -----------------------------------------------------------------------------------
def study_table(study: StudyRecord, progress: StudyProgress, best: FrozenTrial | None,
                front: Sequence[FrozenTrial] = ()) -> Table:
    """A key/value table of one study's state (``pbtune status``): its best trial, or
    the size of its ``front`` with several objectives."""
    scores = Scores.of(study.config)
    table = Table(title=f"study {study.name!r}", title_justify="left", show_header=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    stopped = f", stopped: {study.stop_reason}" if study.stop_reason is not None else ""
    table.add_row("state", study.state.value + stopped)
    table.add_row(
        "progress",
        f"{progress.steps_done}/{progress.steps_total} steps ({100 * progress.fraction:.1f}%)",
    )
    table.add_row("trials", ", ".join(
        f"{progress.counts.get(state, 0)} {state.value.lower()}" for state in TrialState
    ))
    if scores.several:
        table.add_row("objectives", scores.label())
    if scores.constrained:
        table.add_row("constraints", scores.constraints_text())
    if scores.several:
        _front_row(table, study, scores, front)
    elif best is None:
        table.add_row("best", "-")
    else:  # the best of the final population once it exists, else the best so far
        final = best.end_step >= int(study.config.get("max_steps", best.end_step))
        table.add_row(
            "best at max_steps" if final else "best so far",
            f"{fitness_label(study.config)} {number(best.fitness)} (trial {best.number}, "
            f"member {best.member}, steps {best.start_step}-{best.end_step}"
            f"{scores.mark(best)})",
        )
    if study.error:
        table.add_row("error", Text(study.error, style="red"))
    return table


def _front_row(table: Table, study: StudyRecord, scores: Scores,
               front: Sequence[FrozenTrial]) -> None:
    if not front:
        table.add_row("front", "-")
        return
    final = all(t.end_step >= int(study.config["max_steps"]) for t in front)
    infeasible = " (none feasible yet)" if scores.violation(front[0]) > 0 else ""
    table.add_row("front at max_steps" if final else "front so far",
                  f"{front_text(front)}{infeasible}: pbtune best lists them")


def failures_table(study: StudyRecord, failed: Sequence[FrozenTrial]) -> Table:
    """FAILED trials (the code's fault) and LOST ones (not the code's), each marked."""
    states = {t.state for t in failed}
    kinds = " and ".join(s.value.lower() for s in TrialState if s in states) or "failed"
    table = Table(title=f"{kinds} trials of {study.name!r}", title_justify="left")
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column("member", justify="right", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("error", overflow="fold")
    for trial in failed:
        table.add_row(str(trial.number), str(trial.member),
                      f"{trial.start_step}-{trial.end_step}",
                      Text(trial.state.value, style=_STATE_STYLE.get(trial.state, "")),
                      last_line(trial.error))
    return table
