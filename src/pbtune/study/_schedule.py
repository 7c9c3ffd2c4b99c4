"""A schedule as a file: the JSON that `replay` reads back, and a CSV for reading by eye.

`pbtune schedule` and the dashboard's download write the same files with these functions.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pbtune._errors import ConfigError
from pbtune.trial import Segment


def schedule_json(segments: Sequence[Segment]) -> str:
    """A list of ``{start_step, end_step, params, trial_id}``, as `load_schedule` reads it.

    Example::

        Path("schedule.json").write_text(schedule_json(study.schedule()))
    """
    return json.dumps([segment.to_dict() for segment in segments], indent=2, allow_nan=True)


def schedule_csv(segments: Sequence[Segment], params: Sequence[str]) -> str:
    """``start_step,end_step,trial_id`` and one column per name in ``params``.

    Example::

        schedule_csv(study.schedule(), ["lr", "momentum"])
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["start_step", "end_step", "trial_id", *params])
    for s in segments:
        row = [s.start_step, s.end_step, s.trial_id, *(s.params.get(p) for p in params)]
        writer.writerow(["" if value is None else value for value in row])
    return buffer.getvalue()


def segment_from_dict(data: Mapping[str, Any]) -> Segment:
    try:
        return Segment(
            start_step=int(data["start_step"]),
            end_step=int(data["end_step"]),
            params=dict(data["params"]),
            trial_id=data.get("trial_id"),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(
            f"a schedule segment needs start_step, end_step and params; got {data!r} ({error})"
        ) from None


def load_schedule(path: str | Path) -> list[Segment]:
    """Read a schedule written by ``pbtune schedule --format json``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read schedule {str(path)!r}: {error}") from None
    if isinstance(data, Mapping):
        data = data.get("schedule", data)
    if not isinstance(data, list):
        raise ConfigError(f"schedule {str(path)!r} must hold a list of segments")
    return [segment_from_dict(item) for item in data]
