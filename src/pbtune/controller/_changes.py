"""What differs between a study's stored settings and the settings it is given again.

`create_study(..., load_if_exists=True)`, a study file given to `pbtune run` and
`Study.extend` all hand an existing study settings that may differ from those it was
created with. Some may change on the way (`CHANGEABLE`, and ``max_steps``: see
`pbtune.controller.revise_study`); any other difference is refused with a
`SettingsConflictError` that lists each one as ``name: stored -> given``. The error says
what differs; the layer that raises it to the user (the Python API or the command line)
adds the advice in its own words, since the resolving call or command differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pbtune._errors import ConfigError

# Settings an existing study takes as given: they change how the study is run, never what
# it computes; ``stop``, its stop rules, says when it has learned enough. (``max_steps``
# may change too, within limits: see `revise_study`.)
CHANGEABLE = ("max_retries", "retry_delay", "keep_best", "heartbeat_timeout",
              "trial_timeout", "stop")


class _Absent:
    """A setting or a parameter one side does not have."""

    def __repr__(self) -> str:
        return "(none)"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class SettingChange:
    """One setting that differs: its ``name`` (``space.<param>`` for a parameter of the
    search space, ``space.<param>.<field>`` for one of its fields), the ``stored`` value
    and the ``given`` one (`ABSENT` where a side has none), as stored in JSON; ``note``
    says why a change is refused where the name does not say it (e.g. max_steps lowered
    below the steps already trained)."""

    name: str
    stored: Any
    given: Any
    note: str = ""

    def __str__(self) -> str:
        text = f"{self.name}: {shown(self.stored)} -> {shown(self.given)}"
        return f"{text} ({self.note})" if self.note else text

    @property
    def changeable(self) -> bool:
        return self.name in CHANGEABLE


class SettingsConflictError(ConfigError):
    """A study exists with settings that cannot change to the ones given.

    ``study`` names it, ``changes`` lists the refused differences and ``advice`` says how
    to resolve them, in the words of the API that was called (a Python call, a command).
    The message lists one change a line, or all on one line with ``one_line``.
    """

    def __init__(self, study: str, changes: Sequence[SettingChange], advice: str = "", *,
                 one_line: bool = False) -> None:
        self.study = study
        self.changes = tuple(changes)
        self.advice = advice
        opening, separator, closing = (" ", "; ", ". ") if one_line else ("\n  ", "\n  ", "\n")
        listed = separator.join(str(change) for change in self.changes)
        message = f"study {study!r} exists with other settings:{opening}{listed}"
        super().__init__(message + (closing + advice if advice else ""))


def compare_settings(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[SettingChange]:
    """The settings of ``given`` that differ from ``stored`` (both `StudyConfig.to_dict`
    forms; a key one side lacks counts as `ABSENT`). The search space is compared one
    parameter at a time, so a changed bound shows alone (``space.lr.high: 1.0 -> 0.5``)."""
    changes: list[SettingChange] = []
    for key in [*stored, *(k for k in given if k not in stored)]:
        before, after = stored.get(key, ABSENT), given.get(key, ABSENT)
        if key == "space" and isinstance(before, Mapping) and isinstance(after, Mapping):
            changes.extend(_space_changes(before, after))
        elif before != after and not (_none(before) and _none(after)):
            changes.append(SettingChange(key, before, after))
    return changes


def _none(value: Any) -> bool:
    return value is None or value is ABSENT


def _space_changes(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[SettingChange]:
    """One change per parameter added or removed, or whose kind changed; one per field
    (``space.lr.high``) of a parameter of the same kind."""
    changes: list[SettingChange] = []
    for name in [*stored, *(n for n in given if n not in stored)]:
        before, after = stored.get(name, ABSENT), given.get(name, ABSENT)
        if before == after:
            continue
        same_kind = (isinstance(before, Mapping) and isinstance(after, Mapping)
                     and before.get("type") == after.get("type"))
        if not same_kind:
            changes.append(SettingChange(f"space.{name}", before, after))
            continue
        for key in [*before, *(k for k in after if k not in before)]:
            if before.get(key, ABSENT) != after.get(key, ABSENT):
                changes.append(SettingChange(f"space.{name}.{key}", before.get(key, ABSENT),
                                             after.get(key, ABSENT)))
    return changes


def shown(value: Any) -> str:
    """A setting's value, short and unambiguous: strings quoted, mappings in YAML's flow
    style (``{type: 'float', low: 0.001, high: 1.0}``)."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {shown(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown(item) for item in value) + "]"
    return repr(value)
