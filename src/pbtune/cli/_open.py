"""Opening a storage for the read commands and finding the study they are about."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pbtune._errors import ConfigError, StorageError, StudyNotFoundError
from pbtune.storages import Storage, StudyRecord, sqlite_file
from pbtune.study import load_study
from pbtune.trial import FrozenTrial, Segment, TrialState


def open_existing(url: str, *, application_name: str = "pbtune") -> Storage:
    """Open ``url`` for reading; a SQLite file must exist (opening would create it).
    ``application_name``: see `Storage`."""
    database = sqlite_file(url)  # None for a URL that does not parse: Storage() explains
    if database is not None and not Path(database).exists():
        raise StorageError(
            f"no database file {database!r} (storage {url!r}); run `pbtune run` first, "
            "or pass --storage with the URL the study was run with"
        )
    return Storage(url, application_name=application_name)


def select_study(storage: Storage, name: str | None) -> StudyRecord:
    """The study called ``name``; without a name, the only study in the storage."""
    if name is not None:
        return storage.get_study(name)
    studies = storage.list_studies()
    if not studies:
        raise StudyNotFoundError(f"{storage!r} holds no study yet; run `pbtune run` first")
    if len(studies) > 1:
        names = ", ".join(s.name for s in studies)
        raise ConfigError(f"{storage!r} holds {len(studies)} studies; pick one with --study: "
                          f"{names}")
    return studies[0]


def best_trial(storage: Storage, study: StudyRecord) -> FrozenTrial:
    return load_study(study.name, storage=storage).best_trial


def best_trials(storage: Storage, study: StudyRecord) -> list[FrozenTrial]:
    """The Pareto front (see `Study.best_trials`); an error before any trial completed."""
    trials = load_study(study.name, storage=storage).best_trials
    if not trials:
        raise ConfigError(f"study {study.name!r} has no COMPLETE trial yet")
    return trials


def schedule(storage: Storage, study: StudyRecord, trial_id: int | None) -> list[Segment]:
    """The schedule of the lineage that ends at ``trial_id`` (the best trial by default;
    a study of several objectives has none: then ``--trial`` is needed)."""
    loaded = load_study(study.name, storage=storage)
    if trial_id is None and loaded.config.objectives is not None:
        front = loaded.best_trials
        which = (f"one of its Pareto front: {', '.join(str(t.number) for t in front)} "
                 "(`pbtune best` lists them)") if front else "once a trial has completed"
        raise ConfigError(f"study {study.name!r} has several objectives, so no single best "
                          f"trial: pass --trial N, {which}")
    return loaded.schedule(trial_id)


def param_names(study: StudyRecord, params: Iterable[Mapping[str, Any]]) -> list[str]:
    """The study's parameter names in space order (plus any ``params`` has beyond them)."""
    names = list(study.config.get("space", {}))
    for values in params:
        for name in values:
            if name not in names:
                names.append(name)
    return names


def failed_trials(storage: Storage, study: StudyRecord) -> list[FrozenTrial]:
    return storage.get_trials(study.id, [TrialState.FAILED, TrialState.LOST])
