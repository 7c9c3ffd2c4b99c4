"""Decisions are values: what a member does after one of its trials finished."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Continue:
    """Train on from the finished trial's own checkpoint with the same params."""


@dataclass(frozen=True)
class Exploit:
    """Copy another member's trial ``parent_id`` (its checkpoint) and train on with
    ``params``, explored from that trial's."""

    parent_id: int
    params: dict[str, Any]


@dataclass(frozen=True)
class Explore:
    """Train on from the finished trial's own checkpoint with new ``params`` (in place;
    what a member does on a plateau, where there is nobody better to copy)."""

    params: dict[str, Any]


@dataclass(frozen=True)
class Restart:
    """The member is stopped early (see `pbtune.Lagging`): its slot restarts from another
    member's trial ``parent_id`` with ``params``, explored from that trial's."""

    parent_id: int
    params: dict[str, Any]


@dataclass(frozen=True)
class Stop:
    """The member is done (budget reached)."""

    reason: str


Decision = Continue | Exploit | Explore | Restart | Stop
