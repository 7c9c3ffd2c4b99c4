"""The faults a simulation injects, on its virtual clock."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pbtune._errors import ConfigError


@dataclass(frozen=True)
class Faults:
    """``kill_fraction`` of the workers each die once, during a trial (SIGKILL: the trial
    is left for the reaper); ``silent_fraction`` each hang once, mid-trial, past the
    heartbeat timeout, and then tell a result the study has given up on; ``outage`` is
    ``(start_s, duration_s)`` of virtual time in which the storage answers nothing (every
    call waits for its end); a killed worker is replaced ``restart_s`` later (None: never,
    as where nothing restarts it)."""

    kill_fraction: float = 0.0
    silent_fraction: float = 0.0
    outage: tuple[float, float] | None = None
    restart_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("kill_fraction", "silent_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} is a fraction of the workers, in [0, 1]; got "
                                  f"{value!r}")
        if self.kill_fraction + self.silent_fraction > 1.0:
            raise ConfigError("kill_fraction + silent_fraction cannot exceed 1: a worker "
                              "dies or goes silent, not both")
        if self.outage is not None:
            start, duration = self.outage
            if not (math.isfinite(start) and math.isfinite(duration)) or start < 0 \
                    or duration <= 0:
                raise ConfigError(f"outage is (start_s >= 0, duration_s > 0) of virtual "
                                  f"time, got {self.outage!r}")
        if self.restart_s is not None and not self.restart_s >= 0:
            raise ConfigError(f"restart_s must be >= 0 or None, got {self.restart_s!r}")
