"""`Study.trials_dataframe`: the trials as a pandas DataFrame, one row per trial.

pandas is an optional extra (``pip install "pbtune[pandas]"``), imported only here, when
a frame is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pbtune._errors import ConfigError
from pbtune.trial import FrozenTrial

# The columns before the params and metrics, then those after them (as Optuna orders its
# own: identity and state first, times last).
LEADING = ("number", "state", "member", "generation", "parent", "decision", "start_step",
           "end_step", "fitness")
TRAILING = ("datetime_created", "datetime_start", "datetime_complete", "duration", "worker")


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ConfigError(
            'trials_dataframe() needs pandas: pip install "pbtune[pandas]" (or pandas>=2)'
        ) from None
    return pandas


def trials_frame(trials: Sequence[FrozenTrial], param_names: Sequence[str]) -> Any:
    """A DataFrame of ``trials``: ``number``, ``state``, ``member``, ``generation``,
    ``parent`` (the parent trial's number, or missing), ``decision``, ``start_step``,
    ``end_step``, ``fitness``, a ``params_<name>`` column per parameter (``param_names``
    first, in the space's order) and a ``metrics_<name>`` column per metric any trial
    returned, then ``datetime_created``, ``datetime_start``, ``datetime_complete``
    (timestamps in UTC), ``duration`` (a timedelta) and ``worker``."""
    pd = _pandas()
    params = _names([t.params for t in trials], param_names)
    metrics = _names([t.metrics or {} for t in trials], ())
    rows = []
    for t in trials:
        row: dict[str, Any] = {
            "number": t.number, "state": t.state.value, "member": t.member,
            "generation": t.generation,
            "parent": t.parent_id,
            "decision": t.decision, "start_step": t.start_step, "end_step": t.end_step,
            "fitness": t.fitness,
        }
        row.update({f"params_{n}": t.params.get(n) for n in params})
        row.update({f"metrics_{n}": (t.metrics or {}).get(n) for n in metrics})
        row.update({
            "datetime_created": t.created_at, "datetime_start": t.started_at,
            "datetime_complete": t.finished_at, "duration": t.duration, "worker": t.worker,
        })
        rows.append(row)
    columns = [*LEADING, *(f"params_{n}" for n in params),
               *(f"metrics_{n}" for n in metrics), *TRAILING]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("datetime_created", "datetime_start", "datetime_complete"):
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    frame["duration"] = pd.to_timedelta(frame["duration"], unit="s")
    frame["parent"] = frame["parent"].astype("Int64")
    frame["fitness"] = frame["fitness"].astype("float64")
    return frame


def _names(mappings: Sequence[Any], first: Sequence[str]) -> list[str]:
    """``first``, then every other key of ``mappings`` in the order met."""
    names = list(first)
    seen = set(names)
    for mapping in mappings:
        for name in mapping:
            if name not in seen:
                seen.add(name)
                names.append(name)
    return names
