"""Decisions are values: what a member does after one of its trials finished."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Continue:
    """Train on from the finished trial's own checkpoint with the same params."""


@dataclass(frozen=True)
class Exploit:
    """Copy ``parent_id``'s checkpoint and train on with explored ``params``."""

    parent_id: int
    params: dict[str, Any]


@dataclass(frozen=True)
class Stop:
    """The member is done (budget reached)."""

    reason: str


Decision = Continue | Exploit | Stop
