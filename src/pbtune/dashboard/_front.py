"""The data of the front view (a study of several objectives), shared by the dashboard
and `pbtune plot`.

Every COMPLETE trial is a point of objective values (a sample of at most
`MAX_FRONT_POINTS`, always holding each member's latest trial and the front); the members'
latest trials are the population whose Pareto front `Study.best_trials` is, and the front
is marked. With two objectives the view is a scatter with the front drawn as a step line
(``steps``: the edge of the region the front dominates); with three or more, parallel
coordinates. Trials that break a constraint say which (``infeasible``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pbtune.dashboard._data import StudyData, _num, param_names
from pbtune.storages import StudyRecord
from pbtune.study import Scores, front
from pbtune.trial import FrozenTrial, TrialState

MAX_FRONT_POINTS = 3000


def front_view(data: StudyData, study: StudyRecord,
               max_points: int = MAX_FRONT_POINTS) -> dict[str, Any]:
    """The objectives (``[{"name", "mode"}]``), the constraints (as text), the trials
    (``{number, member, start_step, end_step, values, infeasible, latest, front,
    params}``, by number), the front's numbers and, with two objectives, its step line
    ``[[x, y], ...]``."""
    scores = Scores.of(study.config)
    snap = data.trials(study)
    latest = {t.id for t in data.storage.get_population(study.id)}
    best = front(data.storage, study)
    on_front = {t.id for t in best}

    def values(trial: FrozenTrial) -> list[float | None]:
        return [_num(v) for v in scores.objective_values(trial).values()]

    done = [t for t in snap.trials
            if t.state == TrialState.COMPLETE and None not in values(t)]
    kept = _sample(done, latest | on_front, max_points)
    names = param_names(study)
    trials = [{"number": t.number, "member": t.member, "start_step": t.start_step,
               "end_step": t.end_step, "values": values(t),
               "infeasible": scores.broken(t) if scores.constrained else "",
               "latest": t.id in latest, "front": t.id in on_front,
               "params": [t.params.get(n) for n in names]} for t in kept]
    objectives = [{"name": n, "mode": m} for n, m in scores.criteria.objectives]
    points = [[v for v in values(t) if v is not None] for t in best if None not in values(t)]
    return {"objectives": objectives,
            "constraints": [str(b) for b in scores.criteria.constraints],
            "trials": trials, "front": [t.number for t in best], "total": len(done),
            "params": names,
            "steps": front_steps(points, [m for _, m in scores.criteria.objectives])
            if len(objectives) == 2 else None}


def _sample(done: Sequence[FrozenTrial], keep: set[int], limit: int) -> list[FrozenTrial]:
    """``done`` if it is small; else the trials of ``keep`` and an even sample of the rest
    (at most ``limit`` in all), by number."""
    if len(done) <= limit:
        return list(done)
    rest = [t for t in done if t.id not in keep]
    room = max(0, limit - (len(done) - len(rest)))
    stride = len(rest) / room if room else 0
    chosen = {rest[int(i * stride)].id for i in range(room)} | keep
    return [t for t in done if t.id in chosen]


def front_steps(points: Sequence[Sequence[float]], modes: Sequence[str]
                ) -> list[list[float]]:
    """The step line of a two-objective front: from each point, along the second
    objective to the next point's value, then along the first to the next point, so
    the line is the edge of the region the front dominates. ``points`` ``[[x, y]]`` in
    the objectives' own units, ``modes`` "max"/"min"."""
    sign = [1.0 if m == "max" else -1.0 for m in modes]
    oriented = sorted({(sign[0] * p[0], sign[1] * p[1]) for p in points})
    line: list[list[float]] = []
    for i, (x, y) in enumerate(oriented):  # higher is better in both: y falls as x grows
        line.append([x, y])
        if i + 1 < len(oriented):
            line.append([x, oriented[i + 1][1]])
    return [[sign[0] * x, sign[1] * y] for x, y in line]
