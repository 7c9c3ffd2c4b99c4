"""Changing an existing study's settings: safe ones taken, the budget raised or lowered
within what was trained, anything else refused.

A raised ``max_steps`` is decided as if the budget had always been that large: every
member that had reached the old budget gets its next trial from the controller's normal
decision path (continue, exploit or explore from the latest results, warm-starting from a
latest checkpoint, which garbage collection always keeps), so its lineage goes on
unbroken and a finished study runs again. Members that gave up (FAILED, more than
``max_retries`` failures in a row) stay as they are: their code failed, not their budget.

Changed stop rules judge the study's past as if they had always been its rules (see
`judge_past`): a study they would have stopped is stopped (or stays stopped, with their
reason); one that a rule had stopped and that they would not have stopped runs again. A
raised budget runs a stopped study again too, unless its rules say stop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pbtune.controller._changes import SettingChange, SettingsConflictError, compare_settings
from pbtune.controller._config import StudyConfig
from pbtune.controller._members import enqueue_next, maybe_finish_study
from pbtune.controller._stopping import judge_past, reopen, stop_for, stopped_by_rule
from pbtune.storages import MemberState, Storage, StudyState, Transaction


@dataclass(frozen=True)
class Revision:
    """What `revise_study` changed: the settings (``name: stored -> given``), the members
    that train on under a raised budget, the settings as now stored, what is worth
    logging about the decisions it made, and how the study's end changed: ``stopped``,
    the reason its stop rules stop it (or keep it stopped) with; ``reopened``, whether a
    study that had stopped runs again."""

    changes: tuple[SettingChange, ...]
    resumed: tuple[int, ...]
    config: dict[str, Any]
    notes: tuple[str, ...] = ()
    stopped: str | None = None
    reopened: bool = False


def revise_study(storage: Storage, study_id: int, study_name: str, given: Mapping[str, Any],
                 *, partial: bool = False) -> Revision:
    """Make the study's stored settings ``given`` (a `StudyConfig.to_dict`; with
    ``partial``, only the keys it has), in one transaction with what that causes.

    ``max_retries``, ``keep_best``, ``heartbeat_timeout`` and ``trial_timeout`` are taken
    (processes already running keep theirs until they start again). ``max_steps`` may be
    raised (the members that reached the old budget train on) or lowered down to the
    furthest step a trial trains to, and ``stop`` (the stop rules) may change; running
    workers follow both from their next decision. Any other difference raises
    `SettingsConflictError` and changes nothing.
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
        config = StudyConfig.from_dict(wanted(current))  # checked as a whole
        revised = config.to_dict()
        before = _End.read(tx)
        tx.set_study_config(revised)
        old, new = int(current["max_steps"]), int(revised["max_steps"])
        notes: list[str] = []
        resumed = _resume(tx, config, old, notes) if new > old else ()
        rules_changed = any(change.name == "stop" for change in changes)
        stopped, reopened = _settle(tx, config, before, rules_changed, new > old, notes)
        return Revision(tuple(changes), resumed, revised, tuple(notes), stopped, reopened)

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
    now = tx.clock.time()
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


@dataclass(frozen=True)
class _End:
    """How the study stood before a settings change: its state, and whether it ended
    before its budget (``early``), by a stop rule (``by_rule``)."""

    state: StudyState
    early: bool
    by_rule: bool

    @classmethod
    def read(cls, tx: Transaction) -> _End:
        state = tx.study_state()
        early = state == StudyState.COMPLETE and tx.stop_reason() is not None
        return cls(state, early, early and stopped_by_rule(tx))


def _settle(tx: Transaction, config: StudyConfig, before: _End, rules_changed: bool,
            raised: bool, notes: list[str]) -> tuple[str | None, bool]:
    """After changed rules or a raised budget: judge the study's past by its rules (as
    they are now) and stop it, keep it stopped, or run it again. Returns (the reason it
    is stopped for, whether it runs again).

    A study left as it was: a FAILED one, and one whose budget was not raised that
    finished it, or that its user stopped (`Study.stop`): new rules do not undo a user's
    stop; a raised budget does.
    """
    if before.state == StudyState.FAILED or not (
            rules_changed or (raised and before.state != StudyState.RUNNING)):
        return None, False
    verdict = judge_past(tx, config)
    if verdict.reason is not None:
        if before.state == StudyState.RUNNING or before.by_rule or raised:
            stop_for(tx, verdict)
            return verdict.reason, False
        return None, False
    tx.set_stop_state(verdict.state)
    if not (before.by_rule or (raised and before.early)):
        return None, False
    if reopen(tx, config, notes):
        return None, True
    maybe_finish_study(tx)  # nothing was left to run: it ends at its budget
    return None, False
