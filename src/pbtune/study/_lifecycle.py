"""A study's life from the Python API: settings changed on an existing study (a raised
budget among them), and deleting a study with its checkpoints.

The controller decides what may change (`pbtune.controller.revise_study`); this module
says it in the words of the Python API. The command line words the same errors its own way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pbtune import checkpoints
from pbtune._errors import CheckpointError, ConfigError, PbtuneError, StudyNotFoundError
from pbtune.checkpoints import Location
from pbtune.controller import CHANGEABLE, Revision, SettingsConflictError, revise_study
from pbtune.storages import HeldTrial, Storage, StudyRecord, sqlite_file
from pbtune.study._open import DEFAULT_STORAGE, StorageLike, open_storage

_log = logging.getLogger("pbtune.study")


class StudyInUseError(PbtuneError):
    """A study cannot be deleted while workers run its trials."""


@dataclass(frozen=True)
class DeletedStudy:
    """What `delete_study` removed: the study's name, how many trials it had, and its
    checkpoint directory (a `Path`) or URL prefix (a `str`)."""

    name: str
    trials: int
    checkpoints: Location


def python_advice(name: str, storage: str) -> str:
    """How to resolve a refused settings change from Python; ``storage`` is the
    ``storage=`` argument to show (the URL as given, as a Python literal)."""
    return (
        "An existing study takes a changed max_steps (raised, or lowered to no less than "
        f"its trials reach) and changed {', '.join(CHANGEABLE)}; nothing else. To start "
        f"over with the new settings, delete it with pbtune.delete_study(name={name!r}, "
        f"storage={storage}) (its trials and checkpoints go), then create it again; to "
        f"continue it as it was, use pbtune.load_study({name!r}, storage={storage}); or "
        "give the new study another name."
    )


def storage_argument(given: object, store: Storage) -> str:
    """The ``storage=`` argument that reaches ``store`` again, as Python source."""
    if isinstance(given, str):
        return repr(given)
    return repr(store.url) if store.url is not None else "<the same in-memory Storage>"


def revise(store: Storage, record: StudyRecord, given: Mapping[str, Any], *, storage: str,
           partial: bool = False, level: int = logging.WARNING) -> Revision:
    """`revise_study` with the Python API's advice on a refusal, and a log line that
    says what changed (a settings change should never go unnoticed; at ``level``, INFO
    where the caller asked for the change as part of a run, as ``optimize(stop=...)``)."""
    try:
        revision = revise_study(store, record.id, record.name, given, partial=partial)
    except SettingsConflictError as error:
        raise SettingsConflictError(
            error.study, error.changes, python_advice(record.name, storage)
        ) from None
    if revision.changes:
        _log.log(level, "study %r goes on with changed settings: %s", record.name,
                 "; ".join(str(c) for c in revision.changes))
    if revision.resumed:
        _log.warning("members %s of study %r train on to max_steps=%s from their latest "
                     "checkpoints", list(revision.resumed), record.name,
                     revision.config["max_steps"])
    for note in revision.notes:
        _log.warning(note)
    if revision.stopped is not None:
        _log.warning("study %r stopped: %s (its stop rules, judging the results so far)",
                     record.name, revision.stopped)
    if revision.reopened:
        _log.warning("study %r runs again: it had stopped early, and its stop rules as they "
                     "are now would not have stopped it", record.name)
    return revision


def check_extension(record: StudyRecord, max_steps: object) -> None:
    """Refuse a `Study.extend` that would not raise the budget."""
    if isinstance(max_steps, bool) or not isinstance(max_steps, int):
        raise ConfigError(f"max_steps must be an int, got {max_steps!r}")
    stored = int(record.config["max_steps"])
    if max_steps < stored:
        raise ConfigError(
            f"extend(max_steps={max_steps}) would lower the budget of study "
            f"{record.name!r} ({stored}); extend only raises it. To end a running study "
            "now, call study.stop(); to end it at a lower budget, pass the lower max_steps "
            "to create_study(..., load_if_exists=True)"
        )


def delete(store: Storage, name: str) -> DeletedStudy:
    """Delete study ``name``: its rows in one transaction, then its checkpoints.

    Refused (`StudyInUseError`) while a worker holds one of its trials and has beaten
    within the study's ``heartbeat_timeout``. The checkpoint root is checked first, so a
    study whose checkpoints cannot be deleted from here (a read-only folder, missing
    cloud credentials) is refused whole rather than half deleted.
    """
    record = store.get_study(name)  # StudyNotFoundError names the studies there are
    root = str(record.config["checkpoint_root"])
    location = checkpoints.open_store(root, record.checkpoint_dir)
    try:
        checkpoints.check_root(root)
        timeout = float(record.config.get("heartbeat_timeout", 60.0))
        trials = len(store.get_trials(record.id))
        busy = store.delete_study(record.id, unless_beat_within=timeout)
        if busy:
            raise StudyInUseError(_in_use(name, busy, timeout))
        try:
            location.destroy()
        except (OSError, CheckpointError) as error:
            raise CheckpointError(
                f"study {name!r} was deleted from {store!r}, but its checkpoints at "
                f"{location.location} could not be: {error}; delete that folder yourself"
            ) from None
    finally:
        location.close()
    return DeletedStudy(name, trials, location.location)


def _in_use(name: str, busy: list[HeldTrial], timeout: float) -> str:
    held = ", ".join(
        f"trial {h.trial.number} by {h.trial.worker or '?'} "
        f"({max(0.0, h.silence or 0.0):.0f} s ago)"
        for h in busy[:5]
    ) + (f" and {len(busy) - 5} more" if len(busy) > 5 else "")
    return (
        f"study {name!r} is in use: workers hold {len(busy)} of its trials and sent a "
        f"heartbeat within its heartbeat_timeout ({timeout:g} s): {held}. Stop those "
        "workers (Ctrl-C the optimize or `pbtune run`, end the `pbtune worker` jobs) or let "
        "the study finish, then delete it again; the trials of a worker killed outright "
        f"are free once its last heartbeat is {timeout:g} s old"
    )


def delete_study(name: str, *, storage: StorageLike = DEFAULT_STORAGE) -> DeletedStudy:
    """Delete a study: its trials, members and reports (one transaction), then its
    checkpoint directory (or remote prefix); nothing of other studies.

    Raises `StudyNotFoundError` (naming the studies there are) for an unknown name, and
    `pbtune.StudyInUseError` while workers hold its trials (heartbeats younger than its
    ``heartbeat_timeout``): stop them first. There is no force: a worker that outlived its
    study would write into a deleted one, or, where the database gives a deleted study's
    id to the next one made, into another study.

    Example::

        pbtune.delete_study(name="typo", storage="sqlite:///pbtune.db")
    """
    if isinstance(storage, str):
        database = sqlite_file(storage)
        if database is not None and not Path(database).exists():
            raise StudyNotFoundError(
                f"no study named {name!r}: there is no database file {database!r} "
                f"(storage {storage!r})"
            )
    return delete(open_storage(storage), name)
