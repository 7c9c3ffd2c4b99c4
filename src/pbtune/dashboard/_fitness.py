"""The data of the PBT plot (fitness against step), shared by the dashboard and `pbtune plot`.

A study of several objectives has no fitness: the plot shows one objective (the first
unless asked for another) and highlights the lineage of the best final trial on it.

The plot keeps at most a few hundred points per member (the last one in each step bucket)
and proposes a y-range that shows the race among the trained population: the first
generation's scores (a model trained for one segment from scratch) and the odd member that
collapsed after an exploit would otherwise stretch the axis until the race is a flat band.
Points outside the range are still sent; the views draw them as marks at the edge.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pbtune.dashboard._data import StudyData, _num, param_names
from pbtune.storages import StudyRecord
from pbtune.study import Scores, best_on, best_trial
from pbtune.trial import FrozenTrial, TrialState

MAX_PLOT_POINTS = 4000  # all members together
MAX_MEMBER_POINTS = 300
MAX_JUMPS = 1000
FENCE = 1.5  # inter-decile ranges beyond the deciles that still count as the race
PAD = 0.06  # of the range's span, on either side


def is_jump(trial: FrozenTrial, by_id: dict[int, FrozenTrial]) -> bool:
    """Whether the trial copied another member's checkpoint (an exploit, or a restart of
    a member stopped early)."""
    parent = by_id.get(trial.parent_id) if trial.parent_id is not None else None
    return parent is not None and (trial.decision == "exploit" or parent.member != trial.member)


def fitness_range(race: Sequence[float], others: Sequence[float] = (),
                  keep: Sequence[float] = ()) -> list[float] | None:
    """A y-range fitted to ``race`` that leaves out far outliers but always shows ``keep``.

    Fences lie ``FENCE`` inter-decile ranges beyond the 10th and 90th percentiles of ``race``
    (Tukey's fences, on deciles so that a population that agrees to the last digit does not
    cut its own stragglers); the range spans the values of ``race`` and ``others`` inside
    them, widened to hold every value of ``keep`` (the best trial), and padded. ``None``
    when ``race`` has no value. Example::

        fitness_range([0.14] + [0.95, 0.96, 0.97] * 5)  # about [0.949, 0.971]: no 0.14
    """
    finite = np.asarray([v for v in race if _num(v) is not None], dtype=float)
    if finite.size == 0:
        return None
    q1, q3 = np.percentile(finite, [10, 90])
    spread = q3 - q1
    extra = np.asarray([v for v in others if _num(v) is not None], dtype=float)
    every = np.concatenate([finite, extra])
    inside = every[(every >= q1 - FENCE * spread) & (every <= q3 + FENCE * spread)]
    lo, hi = float(inside.min()), float(inside.max())
    for value in keep:
        if _num(value) is not None:
            lo, hi = min(lo, value), max(hi, value)
    pad = (hi - lo) * PAD if hi > lo else max(abs(hi) * 0.05, 1e-9)
    return [lo - pad, hi + pad]


@dataclass(frozen=True)
class _Axis:
    """What the plot's y-axis shows: the fitness, or one objective of several."""

    value: Callable[[FrozenTrial], float | None]
    objective: str | None  # None: the fitness
    label: str  # "fitness (accuracy, max)", or "accuracy (max)"
    mode: str


def _axis(study: StudyRecord, objective: str | None) -> _Axis:
    """The fitness; with several objectives ``objective`` (the first by default). An
    unknown name is a ValueError (the dashboard answers 400)."""
    scores = Scores.of(study.config)
    if not scores.several:
        metric = study.config.get("metric")
        mode = str(study.config.get("mode", "max"))
        label = f"fitness ({metric}, {mode})" if metric else "fitness"
        return _Axis(lambda t: _num(t.fitness), None, label, mode)
    modes = dict(scores.criteria.objectives)
    name = objective or scores.criteria.names[0]
    if name not in modes:
        raise ValueError(f"objective must be one of {', '.join(modes)}, got {name!r}")
    return _Axis(lambda t: _num((t.metrics or {}).get(name)), name, f"{name} ({modes[name]})",
                 modes[name])


def _race(done: Sequence[FrozenTrial], value: Callable[[FrozenTrial], float | None]
          ) -> list[float]:
    """The values that the y-range's fences are fitted to: the trials past the first
    generation (a trained population), or all of them while there is nothing else."""
    later = [v for t in done if t.generation > 0 and (v := value(t)) is not None]
    return later if len(later) >= 4 else [v for t in done if (v := value(t)) is not None]


def _buckets(items: Sequence[FrozenTrial], limit: int, max_step: int) -> list[FrozenTrial]:
    """At most ``limit`` items: the last finished one in each of ``limit`` step buckets."""
    if len(items) <= limit:
        return list(items)
    kept: dict[int, FrozenTrial] = {}
    for item in items:
        kept[min(limit - 1, item.end_step * limit // max(max_step, 1))] = item
    return [kept[b] for b in sorted(kept)]


def _best_path(data: StudyData, study: StudyRecord, by_id: dict[int, FrozenTrial],
               axis: _Axis) -> dict[str, Any] | None:
    """The best trial's lineage as ``[step, value, number]`` points, oldest first (with
    several objectives, the best final trial on the plotted one)."""
    if axis.objective is None:
        best = best_trial(data.storage, study)
    else:
        scores = Scores.of(study.config)
        best = best_on(scores.criteria, data.storage.get_population(study.id), axis.objective)
    if best is None:
        return None
    path, trial = [], by_id.get(best.id, best)
    for _ in range(len(by_id) + 1):
        if (value := axis.value(trial)) is not None:
            path.append([trial.end_step, value, trial.number])
        if trial.parent_id is None or trial.parent_id not in by_id:
            break
        trial = by_id[trial.parent_id]
    return {"trial": best.number, "member": best.member, "fitness": axis.value(best),
            "path": path[::-1]}


def plot(data: StudyData, study: StudyRecord, max_points: int = MAX_PLOT_POINTS,
         objective: str | None = None) -> dict[str, Any]:
    """Fitness (with several objectives: ``objective``, the first by default) against
    step for every member, each exploit or restart as a jump from the parent's point to
    the child's, the best lineage, and a y-range that shows the race.

    A point is ``[step, fitness, number, jumped, decision, [param values in "params"
    order]]``; a jump ``[parent step, parent fitness, child step, child fitness, parent,
    child]``. ``restarts`` lists the children of the jumps that are restarts, and
    ``infeasible`` the trials that break a constraint (by number)."""
    snap = data.trials(study)
    axis = _axis(study, objective)
    scores = Scores.of(study.config)
    done = [t for t in snap.trials
            if t.state == TrialState.COMPLETE and axis.value(t) is not None]
    names = param_names(study)
    by_member: dict[int, list[FrozenTrial]] = {}
    for trial in sorted(done, key=lambda t: (t.end_step, t.number)):
        by_member.setdefault(trial.member, []).append(trial)
    per_member = max(2, min(MAX_MEMBER_POINTS, max_points // max(len(by_member), 1)))
    max_step = max((t.end_step for t in done), default=1)
    members = []
    kept_ids: set[int] = set()
    for member, items in sorted(by_member.items()):
        kept = _buckets(items, per_member, max_step)
        kept_ids.update(t.id for t in kept)
        members.append({"member": member, "points": [
            [t.end_step, axis.value(t), t.number, int(is_jump(t, snap.by_id)), t.decision,
             [t.params.get(n) for n in names]] for t in kept]})
    jumps = []
    for trial in done:
        if trial.id in kept_ids and is_jump(trial, snap.by_id):
            parent = snap.by_id[trial.parent_id]  # type: ignore[index]
            if (start := axis.value(parent)) is not None:
                jumps.append([parent.end_step, start, trial.end_step, axis.value(trial),
                              parent.number, trial.number])
    if len(jumps) > MAX_JUMPS:
        stride = len(jumps) / MAX_JUMPS
        jumps = [jumps[int(i * stride)] for i in range(MAX_JUMPS)]
    best = _best_path(data, study, snap.by_id, axis)
    keep = [best["fitness"]] if best is not None and best["fitness"] is not None else []
    values = [v for t in done if (v := axis.value(t)) is not None]
    y_range = fitness_range(_race(done, axis.value), values, keep)
    several = scores.several
    return {"members": members, "jumps": jumps, "total": len(done), "max_step": max_step,
            "params": names, "best": best, "y_range": y_range,
            "metric": axis.objective if several else study.config.get("metric"),
            "mode": axis.mode if several else study.config.get("mode"),
            "label": axis.label, "objective": axis.objective,
            "objectives": list(scores.criteria.names) if several else None,
            **_marks(done, kept_ids, jumps, scores)}


def _marks(done: Sequence[FrozenTrial], kept: set[int], jumps: list[list[Any]],
           scores: Scores) -> dict[str, list[int]]:
    """``restarts``: the children of ``jumps`` that restarted a member stopped early;
    ``infeasible``: the ``kept`` trials that break a constraint (by number)."""
    restarts = {t.number for t in done if t.decision == "restart"}
    return {"restarts": [j[5] for j in jumps if j[5] in restarts],
            "infeasible": [t.number for t in done if t.id in kept and scores.constrained
                           and scores.violation(t) > 0]}
