"""The words every view of a running study shares: how a fitness, trial counts, a lost
trial and the storage are written, and the commands that read a study."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import make_url

from pbtune.storages import is_sqlite_memory
from pbtune.trial import TrialState


def fitness_label(config: Mapping[str, Any]) -> str:
    """What the fitness is and which way is better, e.g. ``accuracy (max)``, so a number
    is never read as a loss when it is a score (or the other way round)."""
    metric = config.get("metric")
    return f"{metric if metric else 'fitness'} ({config.get('mode', 'max')})"


def number(value: Any) -> str:
    """A float to 6 significant digits, anything else as it is."""
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def counts_text(counts: Mapping[TrialState, int], *, zeros: bool = False) -> str:
    """``3 running, 12 complete, 1 failed``: every state the storage counts, in the
    enum's order (so a state added to `TrialState` shows up here by itself)."""
    shown = [f"{count} {state.value.lower()}" for state, count in counts.items()
             if count or zeros]
    return ", ".join(shown) if shown else "none"


def storage_text(url: str | None) -> str:
    """The storage URL as a user passes it to `pbtune` commands: as given (a relative
    SQLite file works from the same folder), a password hidden."""
    if url is None or is_sqlite_memory(url):
        return "memory"
    shown = make_url(url).render_as_string(hide_password=True)
    return shown.replace("postgresql+psycopg://", "postgresql://", 1)


def next_commands(url: str | None, name: str, *, several: bool = False) -> list[str]:
    """The `pbtune` commands that read this study, with its --storage and --study; for a
    study of ``several`` objectives, `pbtune best` (its front) instead of the schedule
    (of which trial? one of the front: ``--trial N``)."""
    if storage_text(url) == "memory":
        return []
    where = f"--storage {shlex.quote(storage_text(url))} --study {shlex.quote(name)}"
    if several:
        return [f"pbtune status {where}", f"pbtune best {where}",
                f"pbtune dashboard {where}"]
    return [
        f"pbtune status {where}",
        f"pbtune dashboard {where}",
        f"pbtune schedule {where} -o schedule.json",
    ]
