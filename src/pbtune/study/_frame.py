"""`Study.trials_dataframe`: the trials as a pandas DataFrame, one row per trial.

pandas is an optional extra (``pip install "pbtune[pandas]"``), imported only here, when
a frame is asked for.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from pbtune._errors import ConfigError
from pbtune.strategies import Criteria
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


def trials_frame(trials: Sequence[FrozenTrial], param_names: Sequence[str],
                 criteria: Criteria | None = None, front: Collection[int] = ()) -> Any:
    """A DataFrame of ``trials``: ``number``, ``state``, ``member``, ``generation``,
    ``parent`` (the parent trial's number, or missing), ``decision``, ``start_step``,
    ``end_step``, ``fitness``, a ``params_<name>`` column per parameter (``param_names``
    first, in the space's order) and a ``metrics_<name>`` column per metric any trial
    returned, then ``datetime_created``, ``datetime_start``, ``datetime_complete``
    (timestamps in UTC), ``duration`` (a timedelta) and ``worker``.

    With several objectives (``criteria``) there is no fitness: ``values_<name>`` per
    objective instead, and ``front`` (whether the trial is in the Pareto front: the ids
    ``front``); with constraints, ``violation`` (0: feasible; missing while unfinished)."""
    pd = _pandas()
    rows = [_row(t, criteria, front) for t in trials]
    params = _names([t.params for t in trials], param_names)
    metrics = _names([t.metrics or {} for t in trials], ())
    for t, row in zip(trials, rows, strict=True):
        row.update({f"params_{n}": t.params.get(n) for n in params})
        row.update({f"metrics_{n}": (t.metrics or {}).get(n) for n in metrics})
        row.update({
            "datetime_created": t.created_at, "datetime_start": t.started_at,
            "datetime_complete": t.finished_at, "duration": t.duration, "worker": t.worker,
        })
    columns = [*_leading(criteria), *(f"params_{n}" for n in params),
               *(f"metrics_{n}" for n in metrics), *TRAILING]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("datetime_created", "datetime_start", "datetime_complete"):
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    frame["duration"] = pd.to_timedelta(frame["duration"], unit="s")
    frame["parent"] = frame["parent"].astype("Int64")
    for column in _leading(criteria):
        if column == "fitness" or column.startswith("values_") or column == "violation":
            frame[column] = frame[column].astype("float64")
    if "front" in frame:
        frame["front"] = frame["front"].astype(bool)
    return frame


def _leading(criteria: Criteria | None) -> list[str]:
    """The columns before the params: `LEADING`, the objectives' in place of the fitness
    with several, and the violation with constraints."""
    columns = list(LEADING)
    if criteria is not None and criteria.several:
        at = columns.index("fitness")
        columns[at:at + 1] = [*(f"values_{n}" for n in criteria.names), "front"]
    if criteria is not None and criteria.constraints:
        columns.append("violation")
    return columns


def _row(t: FrozenTrial, criteria: Criteria | None, front: Collection[int]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "number": t.number, "state": t.state.value, "member": t.member,
        "generation": t.generation, "parent": t.parent_id, "decision": t.decision,
        "start_step": t.start_step, "end_step": t.end_step, "fitness": t.fitness,
    }
    if criteria is not None and criteria.several:
        del row["fitness"]
        row.update({f"values_{n}": (t.metrics or {}).get(n) for n in criteria.names})
        row["front"] = t.id in front
    if criteria is not None and criteria.constraints:
        row["violation"] = criteria.violation(t.metrics) if t.metrics is not None else None
    return row


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
