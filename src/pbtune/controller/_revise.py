"""Changing an existing study's settings: safe ones taken, the budget raised or lowered
within what was trained, anything else refused.

A raised ``max_steps`` is decided as if the budget had always been that large: every
member that had reached the old budget gets its next trial from the controller's normal
decision path (continue, exploit or explore from the latest results, warm-starting from a
latest checkpoint, which garbage collection always keeps), so its lineage goes on
unbroken and a finished study runs again. Members that gave up (FAILED, more than
``max_retries`` failures in a row) stay as they are: their code failed, not their budget.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pbtune.controller._changes import SettingChange, SettingsConflictError, compare_settings
from pbtune.controller._config import StudyConfig
from pbtune.controller._members import enqueue_next
from pbtune.storages import MemberState, Storage, StudyState, Transaction


@dataclass(frozen=True)
class Revision:
    """What `revise_study` changed: the settings (``name: stored -> given``), the members
    that train on under a raised budget, the settings as now stored, and what is worth
    logging about the decisions it made."""

    changes: tuple[SettingChange, ...]
    resumed: tuple[int, ...]
    config: dict[str, Any]
    notes: tuple[str, ...] = ()


def revise_study(storage: Storage, study_id: int, study_name: str, given: Mapping[str, Any],
                 *, partial: bool = False) -> Revision:
    """Make the study's stored settings ``given`` (a `StudyConfig.to_dict`; with
    ``partial``, only the keys it has), in one transaction with what that causes.

    ``max_retries``, ``keep_best``, ``heartbeat_timeout`` and ``trial_timeout`` are taken
    (processes already running keep theirs until they start again). ``max_steps`` may be
    raised (the members that reached the old budget train on) or lowered down to the
    furthest step a trial trains to; running workers follow it from their next decision.
    Any other difference raises `SettingsConflictError` and changes nothing.
    """

    def wanted(current: dict[str, Any]) -> dict[str, Any]:
        return {**current, **given} if partial else dict(given)

    # A look first: the same settings again (every `pbtune run` of a study) write nothing.
    stored = StudyConfig.from_dict(storage.get_study_by_id(study_id).config).to_dict()
    if not compare_settings(stored, wanted(stored)):
        return Revision((), (), stored)

    def work(tx: Transaction) -> Revision:
        current = StudyConfig.from_dict(tx.study_config()).to_dict()
        changes = compare_settings(current, wanted(current))
        _refuse(tx, study_name, changes)
        if not changes:
            return Revision((), (), current)
        revised = StudyConfig.from_dict(wanted(current)).to_dict()  # checked as a whole
        tx.set_study_config(revised)
        old, new = int(current["max_steps"]), int(revised["max_steps"])
        notes: list[str] = []
        resumed = _resume(tx, StudyConfig.from_dict(revised), old, notes) if new > old else ()
        return Revision(tuple(changes), resumed, revised, tuple(notes))

    return storage.write(study_id, work)


def _refuse(tx: Transaction, study_name: str, changes: list[SettingChange]) -> None:
    """Raise `SettingsConflictError` for the changes an existing study cannot take."""
    refused = [c for c in changes if not c.changeable and c.name != "max_steps"]
    budget = next((c for c in changes if c.name == "max_steps"), None)
    if budget is not None and isinstance(budget.given, int) and budget.given < budget.stored:
        furthest = tx.furthest_step()
        if budget.given < furthest:
            refused.append(replace(
                budget, note=f"its trials train to step {furthest} already: max_steps can "
                             f"go no lower than {furthest}"))
    if refused:
        raise SettingsConflictError(study_name, refused)


def _resume(tx: Transaction, config: StudyConfig, old_max: int, notes: list[str]
            ) -> tuple[int, ...]:
    """Under a budget raised from ``old_max`` to ``config.max_steps``: lengthen the queued
    trials the old budget cut short, and decide the next trial of every member that had
    reached it (DONE), as its latest result would have been decided under the new one.
    What the decisions say is worth logging goes to ``notes``."""
    now = time.time()
    tx.lengthen_queued(old_max, config.max_steps, config.steps_per_trial)
    population = tx.population()
    latest = {t.member: t for t in population}
    resumed: list[int] = []
    for member in tx.all_members():
        finished = latest.get(member.member)
        if member.state != MemberState.DONE or finished is None:
            continue
        tx.member_resumed(member.member)
        if enqueue_next(tx, config, finished, population, now, notes):
            resumed.append(member.member)
    if resumed and tx.study_state() != StudyState.RUNNING:
        tx.set_study_state(StudyState.RUNNING)
    return tuple(resumed)
