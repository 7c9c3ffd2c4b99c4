"""What a logger writes about one finished trial, read once from the study: its final
metrics, its intermediate reports, its params and its place in the lineage.

Both loggers write the same facts, so they are gathered here, in plain Python, and the
tracker libraries (imported by `optional`, only when a logger is made) see only numbers
and text.
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pbtune._errors import MissingExtraError
from pbtune.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from pbtune.study import Study

ERROR_CHARS = 500
FITNESS = "fitness"


def optional(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` of the optional extra ``extra``, or a `MissingExtraError` (a
    `ConfigError`) that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{what} needs the {extra} package ({error}): pip install 'pbtune[{extra}]' "
            f"(or pip install {extra})"
        ) from None


@dataclass(frozen=True)
class Finished:
    """A finished trial as the loggers write it.

    ``final``: the trial's metrics (and, in a study ranked by a ``fitness=`` function,
    its ``fitness``), all at ``end_step``; ``reports``: what it reported with
    `Trial.report`, by step, without the values ``final`` has at ``end_step``;
    ``parent``: the trial it warm-started from (None for a member's first trial).
    """

    study: str
    trial: FrozenTrial
    parent: FrozenTrial | None
    final: dict[str, float]
    reports: list[tuple[int, dict[str, float]]]

    @classmethod
    def read(cls, study: Study, trial: FrozenTrial) -> Finished:
        final = dict(trial.metrics or {})
        if (study.config.metric is None and study.config.objectives is None
                and trial.fitness is not None and FITNESS not in final):
            final[FITNESS] = trial.fitness  # what ranked it: the user's function's value
        reports = []
        for step, values in study.reports(trial.id):
            kept = {name: value for name, value in values.items()
                    if not (step == trial.end_step and name in final)}
            if kept:
                reports.append((step, kept))
        parent = study.trial(trial.parent_id) if trial.parent_id is not None else None
        return cls(study.name, trial, parent, final, reports)

    @property
    def name(self) -> str:
        """The run's name: ``trial-000042``, as the trial's checkpoint folder is named."""
        return trial_name(self.trial.id)

    @property
    def complete(self) -> bool:
        return self.trial.state == TrialState.COMPLETE

    def origin(self) -> str:
        """How the trial came to be, in words: ``exploit of trial 3 (member 0)``."""
        trial, parent = self.trial, self.parent
        if parent is None:
            return f"{trial.decision}, from scratch"
        if parent.member != trial.member:
            return f"{trial.decision} of trial {parent.id} (member {parent.member})"
        return f"{trial.decision} from trial {parent.id}"

    def text(self) -> str:
        """A paragraph (Markdown) of the trial: lineage, params, state and result."""
        trial = self.trial
        lines = [
            f"**trial {trial.id}** of study `{self.study}`: member {trial.member}, "
            f"generation {trial.generation}, steps {trial.start_step}-{trial.end_step}, "
            f"{self.origin()}",
            f"params: {params_text(trial.params)}",
            f"state: {trial.state.value}",
        ]
        if self.final:
            lines.append("metrics: " + ", ".join(f"{k}={v:g}" for k, v in self.final.items()))
        if trial.error:
            lines.append(f"error: {short_error(trial.error)}")
        if trial.checkpoint is not None:
            lines.append(f"checkpoint: `{trial.checkpoint}`")
        return "\n\n".join(lines)


def trial_name(trial_id: int) -> str:
    return f"trial-{trial_id:06d}"


def study_folder(study: Study) -> str:
    """The name of the study's checkpoint folder, ``logged-6ece33b1``: its name (made
    safe for a file system) and a hash that a study deleted and made again under the same
    name does not share."""
    return PurePosixPath(str(study.checkpoint_dir)).name


def param_text(value: Any) -> str:
    """A param as text: a string as it is, anything else as JSON (``0.001``, ``true``)."""
    return value if isinstance(value, str) else json.dumps(value)


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{name}={param_text(value)}" for name, value in params.items()) or "-"


def number(value: Any) -> float | None:
    """A param's value as a float for a chart (bools as 0 and 1); None for text."""
    if isinstance(value, (bool, int, float)) and math.isfinite(float(value)):
        return float(value)
    return None


def short_error(error: str) -> str:
    """The last line of an error (a traceback's exception), at most `ERROR_CHARS`."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    text = lines[-1] if lines else error
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."
