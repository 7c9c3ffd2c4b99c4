"""The dashboard's data: plain JSON-ready dicts built through the public storage API.

Every view is bounded however many trials a study has: the PBT plot (`_fitness`) keeps at
most a few points per member, the population behind the schedules a few values per bucket,
the trial table is paged, and the lineage is one path. A trial is named by its per-study
``number`` everywhere a user sees it, and ``?trial=N`` takes that number.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pbtune.storages import Storage, StudyRecord
from pbtune.study import Scores, default_trial, front, load_study, measure
from pbtune.trial import FrozenTrial, TrialState

MAX_POPULATION_POINTS = 600  # per parameter, behind the schedule
MAX_PAGE = 500
# "id" stays accepted for old links; the table shows and sorts by the trial's number.
SORT_KEYS = ("number", "id", "member", "generation", "end_step", "state", "decision", "fitness")


class NotFound(LookupError):
    """A study or trial the dashboard was asked about does not exist."""


@dataclass(frozen=True)
class _Snapshot:
    key: tuple[Any, ...]
    trials: list[FrozenTrial]
    by_id: dict[int, FrozenTrial]  # a trial's id is its number in the study


class StudyData:
    """Reads one storage for the dashboard; the trials of a study are read again only when
    its trial counts changed (every finished or failed trial changes them), so polling a
    large study costs one small query between results."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._lock = threading.Lock()
        self._cache: dict[int, _Snapshot] = {}

    def study(self, name: str) -> StudyRecord:
        for record in self.storage.list_studies():
            if record.name == name:
                return record
        raise NotFound(f"no study named {name!r}")

    def trials(self, study: StudyRecord) -> _Snapshot:
        counts = self.storage.count_states(study.id)
        key = tuple(sorted((s.value, n) for s, n in counts.items()))
        with self._lock:
            cached = self._cache.get(study.id)
            if cached is not None and cached.key == key:
                return cached
        rows = self.storage.get_trials(study.id)
        snapshot = _Snapshot(key, rows, {t.id: t for t in rows})
        with self._lock:
            self._cache[study.id] = snapshot
        return snapshot

    def trial(self, study: StudyRecord, number: int) -> FrozenTrial:
        """The trial of ``study`` with this per-study number."""
        found = self.trials(study).by_id.get(number)
        if found is None:
            raise NotFound(f"no trial {number} in study {study.name!r}")
        return found


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def param_names(study: StudyRecord) -> list[str]:
    return list(study.config.get("space", {}))


def summary(data: StudyData, study: StudyRecord) -> dict[str, Any]:
    """State, progress, best fitness (or, with several objectives, the Pareto front's
    trial numbers) and active workers of one study."""
    progress = measure(data.storage, study, best=False)
    running = data.storage.get_trials(study.id, [TrialState.RUNNING, TrialState.EVALUATING])
    scores = Scores.of(study.config)
    best = front(data.storage, study)  # with one objective, [the best trial] (or none)
    return {
        "name": study.name,
        "state": study.state.value,
        "error": study.error,
        "stop_reason": study.stop_reason,
        "steps_done": progress.steps_done,
        "steps_total": progress.steps_total,
        "best_fitness": _num(best[0].fitness) if best and not scores.several else None,
        "best_trial": best[0].number if best and not scores.several else None,
        "front": [t.number for t in best] if scores.several else None,
        "objectives": [list(pair) for pair in scores.criteria.objectives],
        "constraints": [str(bound) for bound in scores.criteria.constraints],
        "workers_active": len({t.worker for t in running if t.worker}),
        "counts": {state.value: count for state, count in progress.counts.items()},
        "mode": study.config.get("mode"),
        "metric": study.config.get("metric"),
        "population_size": study.config.get("population_size"),
        "max_steps": study.config.get("max_steps"),
        "params": param_names(study),
    }


def _node(trial: FrozenTrial, scores: Scores) -> dict[str, Any]:
    """A trial as the views show it, named by its number in the study (its id); with
    several objectives their ``values`` (in order), with constraints what it breaks
    (``infeasible``, empty when feasible; None while unfinished)."""
    node: dict[str, Any] = {
        "number": trial.number, "member": trial.member,
        "generation": trial.generation, "parent": trial.parent_id, "start_step": trial.start_step,
        "end_step": trial.end_step, "state": trial.state.value, "fitness": _num(trial.fitness),
        "params": trial.params, "decision": trial.decision,
    }
    if scores.several:
        node["values"] = [_num(v) for v in scores.objective_values(trial).values()]
    if scores.constrained:
        node["infeasible"] = scores.broken(trial) if trial.metrics is not None else None
    return node


def lineage(data: StudyData, study: StudyRecord, number: int | None) -> list[FrozenTrial]:
    """The path of trials that led to trial ``number`` (by default the best trial; with
    several objectives the best on the first one: `pbtune.study.default_trial`), oldest
    first."""
    snap = data.trials(study)
    if number is None:
        best = default_trial(data.storage, study)
        if best is None:
            return []
        chain = [snap.by_id.get(best.id, best)]
    else:
        chain = [data.trial(study, number)]
    while chain[-1].parent_id is not None and len(chain) <= len(snap.trials):
        parent = snap.by_id.get(chain[-1].parent_id)
        if parent is None:  # created after the snapshot was read: read it directly
            parent = data.storage.get_trial(study.id, chain[-1].parent_id)
        chain.append(parent)
    return chain[::-1]


def lineage_view(data: StudyData, study: StudyRecord, number: int | None) -> dict[str, Any]:
    chain = lineage(data, study, number)
    scores = Scores.of(study.config)
    return {"trial": chain[-1].number if chain else None,
            "nodes": [_node(t, scores) for t in chain]}


def _scale(study: StudyRecord, name: str) -> tuple[list[Any] | None, bool]:
    """The choices of a Choice param (values are plotted as their index), and log scale."""
    spec = study.config.get("space", {}).get(name, {})
    if spec.get("type") == "choice":
        return list(spec.get("choices", [])), False
    return None, bool(spec.get("log"))


def _as_number(value: Any, choices: list[Any] | None) -> float | None:
    if choices is not None:
        return float(choices.index(value)) if value in choices else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else None
    return None


def schedules(data: StudyData, study: StudyRecord, number: int | None) -> dict[str, Any]:
    """Each param against step along one lineage, over a sample of the population's values.

    A lineage segment is ``[start_step, end_step, value]``; the population is the values of
    at most `MAX_POPULATION_POINTS` trials, sampled evenly over steps and members."""
    chain = lineage(data, study, number)
    snap = data.trials(study)
    started = [t for t in snap.trials if t.state != TrialState.QUEUED]
    sample = _even_sample(started, MAX_POPULATION_POINTS)
    out = []
    for name in param_names(study):
        choices, log = _scale(study, name)
        line = [[t.start_step, t.end_step, _as_number(t.params.get(name), choices)]
                for t in chain]
        cloud = [[t.start_step, t.end_step, _as_number(t.params.get(name), choices)]
                 for t in sample]
        out.append({"name": name, "choices": choices, "log": log, "lineage": line,
                    "population": [p for p in cloud if p[2] is not None]})
    return {"trial": chain[-1].number if chain else None, "params": out}


def _even_sample(items: Sequence[FrozenTrial], limit: int) -> list[FrozenTrial]:
    """An even sample of at most ``limit`` trials spread over steps and members."""
    if len(items) <= limit:
        return list(items)
    ordered = sorted(items, key=lambda t: (t.end_step, t.member))
    stride = len(ordered) / limit
    return [ordered[int(i * stride)] for i in range(limit)]


def trial_row(data: StudyData, study: StudyRecord, trial: FrozenTrial) -> dict[str, Any]:
    row = _node(trial, Scores.of(study.config))
    row.update(metrics=trial.metrics, error=trial.error, worker=trial.worker)
    return row


def table(data: StudyData, study: StudyRecord, *, offset: int = 0, limit: int = 50,
          state: str | None = None, sort: str = "number", descending: bool = False,
          ) -> dict[str, Any]:
    """One page of the trial table, sorted and filtered by state."""
    if sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}")
    rows = data.trials(study).trials
    if state:
        wanted = TrialState(state.upper())
        rows = [t for t in rows if t.state == wanted]

    def key(trial: FrozenTrial) -> tuple[Any, ...]:
        value = trial.state.value if sort == "state" else getattr(trial, sort)
        return (value, trial.number)

    # Trials without a value (no fitness yet) come last in either order.
    missing = [t for t in rows if key(t)[0] is None
               or (sort == "fitness" and _num(t.fitness) is None)]
    gone = {t.id for t in missing}
    present = [t for t in rows if t.id not in gone]
    ordered = sorted(present, key=key, reverse=descending) + missing
    limit = max(1, min(limit, MAX_PAGE))
    page = ordered[max(0, offset): max(0, offset) + limit]
    return {"total": len(rows), "offset": offset, "limit": limit,
            "rows": [trial_row(data, study, t) for t in page]}


def schedule_segments(data: StudyData, study: StudyRecord, number: int | None) -> list[Any]:
    """The `Segment`s of the lineage (the schedule export, as `pbtune schedule` writes it)."""
    if number is None:  # the lineage view's default trial (there may be no single best)
        shown = default_trial(data.storage, study)
        if shown is None:
            return []
        return load_study(study.name, storage=data.storage).schedule(shown.id)
    return load_study(study.name, storage=data.storage).schedule(data.trial(study, number).id)
