"""Stand-in for `pbtune.torch`'s parameter guard until it is on this branch (same API).

TODO: remove this file and import from `pbtune.torch` once it is merged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pbtune._errors import ConfigError, PbtuneError


class ParamMismatchError(PbtuneError):
    """An optimizer does not hold the trial's params after they were applied."""


@dataclass(frozen=True)
class GroupKey:
    key: str
    index: int | None = None
    where: Callable[[dict[str, Any]], bool] | None = None


OPTIMIZER_KEYS: dict[str, str | GroupKey | None] = {
    "lr": "lr", "learning_rate": "lr", "weight_decay": "weight_decay", "momentum": "momentum",
    "dampening": "dampening", "betas": "betas", "beta1": GroupKey("betas", 0),
    "beta2": GroupKey("betas", 1), "eps": "eps", "alpha": "alpha", "rho": "rho",
    "lr_decay": "lr_decay",
}


def _list(obj: Any) -> list[Any]:
    if obj is None:
        return []
    return list(obj) if isinstance(obj, Sequence) else [obj]


def _targets(params: Mapping[str, Any], mapping: Mapping[str, Any] | None
             ) -> Iterable[tuple[str, GroupKey]]:
    keys = {**OPTIMIZER_KEYS, **(mapping or {})}
    for name in params:
        key = keys.get(name)
        if key is not None:
            yield name, key if isinstance(key, GroupKey) else GroupKey(key)


def _groups(optimizers: list[Any], key: GroupKey) -> list[dict[str, Any]]:
    return [g for o in optimizers for g in o.param_groups
            if key.key in g and (key.where is None or key.where(g))]


def _read(group: dict[str, Any], key: GroupKey) -> Any:
    value = group[key.key]
    return value if key.index is None else value[key.index]


def _write(group: dict[str, Any], key: GroupKey, value: Any) -> None:
    if key.index is None:
        group[key.key] = value
    else:
        items = list(group[key.key])
        items[key.index] = value
        group[key.key] = tuple(items)


def _set_lr(optimizers: list[Any], schedulers: list[Any], value: float) -> None:
    for scheduler in schedulers:
        groups = scheduler.optimizer.param_groups
        if hasattr(scheduler, "base_lrs"):
            for i, group in enumerate(groups):
                old = scheduler.base_lrs[i]
                group["lr"] = group["lr"] * value / old if old else value
                scheduler.base_lrs[i] = value
                group["initial_lr"] = value
        else:  # ReduceLROnPlateau
            for group in groups:
                group["lr"] = value
    scheduled = {id(s.optimizer) for s in schedulers}
    for optimizer in optimizers:
        if id(optimizer) not in scheduled:
            for group in optimizer.param_groups:
                group["lr"] = value


def apply_params(params: Mapping[str, Any], optimizer: Any, scheduler: Any = None,
                 mapping: Mapping[str, Any] | None = None) -> dict[str, Any]:
    optimizers, schedulers = _list(optimizer), _list(scheduler)
    for name, key in _targets(params, mapping):
        groups = _groups(optimizers, key)
        if not groups:
            raise ConfigError(
                f"param {name!r} maps to the optimizer key {key.key!r}, which no param group "
                f"has; if {name!r} is not an optimizer setting, pass mapping={{{name!r}: None}}")
        if key.key == "lr" and key.where is None:
            _set_lr(optimizers, schedulers, float(params[name]))
        else:
            for group in groups:
                _write(group, key, params[name])
    return check_params(params, optimizers, schedulers, mapping)


def check_params(params: Mapping[str, Any], optimizer: Any, scheduler: Any = None,
                 mapping: Mapping[str, Any] | None = None) -> dict[str, Any]:
    optimizers, schedulers = _list(optimizer), _list(scheduler)
    base = {id(s.optimizer): s for s in schedulers if hasattr(s, "base_lrs")}
    in_effect: dict[str, Any] = {}
    for name, key in _targets(params, mapping):
        for optimizer_ in optimizers:
            for i, group in enumerate(optimizer_.param_groups):
                if key.key not in group or (key.where is not None and not key.where(group)):
                    continue
                if key.key == "lr" and id(optimizer_) in base:
                    value = base[id(optimizer_)].base_lrs[i]
                else:
                    value = _read(group, key)
                if not _equal(value, params[name]):
                    raise ParamMismatchError(
                        f"the optimizer trains with {name}={value!r}, not the trial's "
                        f"{params[name]!r}")
                in_effect[name] = value
    return in_effect


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(
            _equal(x, y) for x, y in zip(a, b, strict=True))
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except (TypeError, ValueError):
        return bool(a == b)
