"""The dashboard's data: plain JSON-ready dicts built through the public storage API.

Every view is bounded however many trials a study has: the PBT plot keeps at most a few
points per member (one per step bucket), the population behind the schedules a few values
per bucket, the trial table is paged, and the lineage is one path.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pbtune.storages import Storage, StudyRecord
from pbtune.study import best_trial, load_study, measure
from pbtune.trial import FrozenTrial, TrialState

MAX_PLOT_POINTS = 4000  # all members together
MAX_MEMBER_POINTS = 300
MAX_JUMPS = 1000
MAX_POPULATION_POINTS = 600  # per parameter, behind the schedule
MAX_PAGE = 500
SORT_KEYS = ("id", "member", "generation", "end_step", "state", "fitness")


class NotFound(LookupError):
    """A study or trial the dashboard was asked about does not exist."""


@dataclass(frozen=True)
class _Snapshot:
    key: tuple[Any, ...]
    trials: list[FrozenTrial]
    by_id: dict[int, FrozenTrial]


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

    def trial(self, study: StudyRecord, trial_id: int) -> FrozenTrial:
        found = self.trials(study).by_id.get(trial_id)
        if found is None:
            raise NotFound(f"no trial {trial_id} in study {study.name!r}")
        return found


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def param_names(study: StudyRecord) -> list[str]:
    return list(study.config.get("space", {}))


def summary(data: StudyData, study: StudyRecord) -> dict[str, Any]:
    """State, progress, best fitness and active workers of one study."""
    progress = measure(data.storage, study)
    running = data.storage.get_trials(study.id, [TrialState.RUNNING, TrialState.EVALUATING])
    best = best_trial(data.storage, study)
    return {
        "name": study.name,
        "state": study.state.value,
        "error": study.error,
        "steps_done": progress.steps_done,
        "steps_total": progress.steps_total,
        "best_fitness": _num(progress.best_fitness),
        "best_trial": best.id if best is not None else None,
        "workers_active": len({t.worker for t in running if t.worker}),
        "counts": {state.value: count for state, count in progress.counts.items()},
        "mode": study.config.get("mode"),
        "metric": study.config.get("metric"),
        "population_size": study.config.get("population_size"),
        "max_steps": study.config.get("max_steps"),
        "params": param_names(study),
    }


def is_jump(trial: FrozenTrial, by_id: dict[int, FrozenTrial]) -> bool:
    """Whether the trial copied another member's checkpoint (an exploit)."""
    parent = by_id.get(trial.parent_id) if trial.parent_id is not None else None
    return parent is not None and (trial.decision == "exploit" or parent.member != trial.member)


def _buckets(items: Sequence[FrozenTrial], limit: int, max_step: int) -> list[FrozenTrial]:
    """At most ``limit`` items: the last finished one in each of ``limit`` step buckets."""
    if len(items) <= limit:
        return list(items)
    kept: dict[int, FrozenTrial] = {}
    for item in items:
        kept[min(limit - 1, item.end_step * limit // max(max_step, 1))] = item
    return [kept[b] for b in sorted(kept)]


def plot(data: StudyData, study: StudyRecord, max_points: int = MAX_PLOT_POINTS) -> dict[str, Any]:
    """Fitness against step for every member, with each exploit as a jump from the parent's
    point to the child's. Points are ``[step, fitness, trial_id, jumped]``."""
    snap = data.trials(study)
    done = [t for t in snap.trials
            if t.state == TrialState.COMPLETE and _num(t.fitness) is not None]
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
            [t.end_step, t.fitness, t.id, int(is_jump(t, snap.by_id))] for t in kept]})
    jumps = []
    for trial in done:
        if trial.id in kept_ids and is_jump(trial, snap.by_id):
            parent = snap.by_id[trial.parent_id]  # type: ignore[index]
            if _num(parent.fitness) is not None:
                jumps.append([parent.end_step, parent.fitness, trial.end_step, trial.fitness,
                              parent.id, trial.id])
    if len(jumps) > MAX_JUMPS:
        stride = len(jumps) / MAX_JUMPS
        jumps = [jumps[int(i * stride)] for i in range(MAX_JUMPS)]
    return {"members": members, "jumps": jumps, "total": len(done), "max_step": max_step}


def _node(trial: FrozenTrial) -> dict[str, Any]:
    return {
        "id": trial.id, "member": trial.member, "generation": trial.generation,
        "parent_id": trial.parent_id, "start_step": trial.start_step,
        "end_step": trial.end_step, "state": trial.state.value, "fitness": _num(trial.fitness),
        "params": trial.params, "decision": trial.decision,
    }


def lineage(data: StudyData, study: StudyRecord, trial_id: int | None) -> list[FrozenTrial]:
    """The path of trials that led to ``trial_id`` (the best trial by default), oldest first."""
    snap = data.trials(study)
    if trial_id is None:
        best = best_trial(data.storage, study)
        if best is None:
            return []
        trial_id = best.id
    chain = [data.trial(study, trial_id)]
    while chain[-1].parent_id is not None and len(chain) <= len(snap.trials):
        parent = snap.by_id.get(chain[-1].parent_id)
        if parent is None:  # created after the snapshot was read: read it directly
            parent = data.storage.get_trial(study.id, chain[-1].parent_id)
        chain.append(parent)
    return chain[::-1]


def lineage_view(data: StudyData, study: StudyRecord, trial_id: int | None) -> dict[str, Any]:
    chain = lineage(data, study, trial_id)
    return {"trial": chain[-1].id if chain else None, "nodes": [_node(t) for t in chain]}


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


def schedules(data: StudyData, study: StudyRecord, trial_id: int | None) -> dict[str, Any]:
    """Each param against step along one lineage, over a sample of the population's values.

    A lineage segment is ``[start_step, end_step, value]``; the population is the values of
    at most `MAX_POPULATION_POINTS` trials, sampled evenly over steps and members."""
    chain = lineage(data, study, trial_id)
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
    return {"trial": chain[-1].id if chain else None, "params": out}


def _even_sample(items: Sequence[FrozenTrial], limit: int) -> list[FrozenTrial]:
    """An even sample of at most ``limit`` trials spread over steps and members."""
    if len(items) <= limit:
        return list(items)
    ordered = sorted(items, key=lambda t: (t.end_step, t.member))
    stride = len(ordered) / limit
    return [ordered[int(i * stride)] for i in range(limit)]


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    row = _node(trial)
    row.update(metrics=trial.metrics, error=trial.error, worker=trial.worker)
    return row


def table(data: StudyData, study: StudyRecord, *, offset: int = 0, limit: int = 50,
          state: str | None = None, sort: str = "id", descending: bool = False,
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
        return (value, trial.id)

    # Trials without a value (no fitness yet) come last in either order.
    missing = [t for t in rows if key(t)[0] is None
               or (sort == "fitness" and _num(t.fitness) is None)]
    gone = {t.id for t in missing}
    present = [t for t in rows if t.id not in gone]
    ordered = sorted(present, key=key, reverse=descending) + missing
    limit = max(1, min(limit, MAX_PAGE))
    page = ordered[max(0, offset): max(0, offset) + limit]
    return {"total": len(rows), "offset": offset, "limit": limit,
            "rows": [trial_row(t) for t in page]}


def schedule_segments(data: StudyData, study: StudyRecord, trial_id: int | None) -> list[Any]:
    """The `Segment`s of the lineage (the schedule export, as `pbtune schedule` writes it)."""
    if trial_id is not None:
        data.trial(study, trial_id)
    return load_study(study.name, storage=data.storage).schedule(trial_id)
