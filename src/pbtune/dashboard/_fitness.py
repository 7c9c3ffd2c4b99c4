"""The data of the PBT plot (fitness against step), shared by the dashboard and `pbtune plot`.

The plot keeps at most a few hundred points per member (the last one in each step bucket)
and proposes a y-range that shows the race among the trained population: the first
generation's scores (a model trained for one segment from scratch) and the odd member that
collapsed after an exploit would otherwise stretch the axis until the race is a flat band.
Points outside the range are still sent; the views draw them as marks at the edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pbtune.dashboard._data import StudyData, _num, param_names
from pbtune.storages import StudyRecord
from pbtune.study import best_trial
from pbtune.trial import FrozenTrial, TrialState

MAX_PLOT_POINTS = 4000  # all members together
MAX_MEMBER_POINTS = 300
MAX_JUMPS = 1000
FENCE = 1.5  # inter-decile ranges beyond the deciles that still count as the race
PAD = 0.06  # of the range's span, on either side


def is_jump(trial: FrozenTrial, by_id: dict[int, FrozenTrial]) -> bool:
    """Whether the trial copied another member's checkpoint (an exploit)."""
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


def _race(done: Sequence[FrozenTrial]) -> list[float]:
    """The fitness values that the y-range's fences are fitted to: the trials past the
    first generation (a trained population), or all of them while there is nothing else."""
    later = [t.fitness for t in done if t.generation > 0 and t.fitness is not None]
    return later if len(later) >= 4 else [t.fitness for t in done if t.fitness is not None]


def _buckets(items: Sequence[FrozenTrial], limit: int, max_step: int) -> list[FrozenTrial]:
    """At most ``limit`` items: the last finished one in each of ``limit`` step buckets."""
    if len(items) <= limit:
        return list(items)
    kept: dict[int, FrozenTrial] = {}
    for item in items:
        kept[min(limit - 1, item.end_step * limit // max(max_step, 1))] = item
    return [kept[b] for b in sorted(kept)]


def _best_path(data: StudyData, study: StudyRecord,
               by_id: dict[int, FrozenTrial]) -> dict[str, Any] | None:
    """The best trial's lineage as ``[step, fitness, number]`` points, oldest first."""
    best = best_trial(data.storage, study)
    if best is None:
        return None
    path, trial = [], by_id.get(best.id, best)
    for _ in range(len(by_id) + 1):
        if _num(trial.fitness) is not None:
            path.append([trial.end_step, trial.fitness, trial.number])
        if trial.parent_id is None or trial.parent_id not in by_id:
            break
        trial = by_id[trial.parent_id]
    return {"trial": best.number, "member": best.member, "fitness": best.fitness,
            "path": path[::-1]}


def plot(data: StudyData, study: StudyRecord, max_points: int = MAX_PLOT_POINTS) -> dict[str, Any]:
    """Fitness against step for every member, each exploit as a jump from the parent's point
    to the child's, the best lineage, and a y-range that shows the race.

    A point is ``[step, fitness, number, jumped, decision, [param values in "params" order]]``;
    a jump ``[parent step, parent fitness, child step, child fitness, parent, child]``."""
    snap = data.trials(study)
    done = [t for t in snap.trials
            if t.state == TrialState.COMPLETE and _num(t.fitness) is not None]
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
            [t.end_step, t.fitness, t.number, int(is_jump(t, snap.by_id)), t.decision,
             [t.params.get(n) for n in names]] for t in kept]})
    jumps = []
    for trial in done:
        if trial.id in kept_ids and is_jump(trial, snap.by_id):
            parent = snap.by_id[trial.parent_id]  # type: ignore[index]
            if _num(parent.fitness) is not None:
                jumps.append([parent.end_step, parent.fitness, trial.end_step, trial.fitness,
                              parent.number, trial.number])
    if len(jumps) > MAX_JUMPS:
        stride = len(jumps) / MAX_JUMPS
        jumps = [jumps[int(i * stride)] for i in range(MAX_JUMPS)]
    best = _best_path(data, study, snap.by_id)
    keep = [best["fitness"]] if best is not None else []
    y_range = fitness_range(_race(done), [t.fitness for t in done if t.fitness is not None], keep)
    return {"members": members, "jumps": jumps, "total": len(done), "max_step": max_step,
            "params": names, "best": best, "y_range": y_range,
            "metric": study.config.get("metric"), "mode": study.config.get("mode")}
