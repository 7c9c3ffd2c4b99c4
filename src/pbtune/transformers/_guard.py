"""The optimizer parameter guard's API (apply_params, check_params, GroupKey), until
pbtune.torch provides it."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pbtune._errors import ConfigError, PbtuneError


class ParamMismatchError(PbtuneError):
    """What an optimizer would train with differs from the trial's params."""


@dataclass(frozen=True)
class GroupKey:
    key: str
    index: int | None = None
    where: Callable[[Mapping[str, Any]], bool] | None = None

    def selects(self, group: Mapping[str, Any]) -> bool:
        return self.key in group and (self.where is None or bool(self.where(group)))

    def read(self, group: Mapping[str, Any]) -> Any:
        value = group[self.key]
        return value[self.index] if self.index is not None else value

    def write(self, group: dict[str, Any], value: Any) -> None:
        if self.index is None:
            group[self.key] = value
        else:
            items = list(group[self.key])
            items[self.index] = value
            group[self.key] = tuple(items)


Mapped = str | GroupKey | None
OPTIMIZER_KEYS: Mapping[str, GroupKey] = {
    "lr": GroupKey("lr"), "learning_rate": GroupKey("lr"),
    "weight_decay": GroupKey("weight_decay"), "eps": GroupKey("eps"),
    "beta1": GroupKey("betas", 0), "beta2": GroupKey("betas", 1),
}


def _mapped(params: Mapping[str, Any], mapping: Mapping[str, Mapped] | None
            ) -> Iterator[tuple[str, GroupKey]]:
    for name, key in {**OPTIMIZER_KEYS, **(mapping or {})}.items():
        if key is not None and name in params:
            yield name, GroupKey(key) if isinstance(key, str) else key


def _groups(optimizer: Any, name: str, key: GroupKey) -> list[tuple[int, dict[str, Any]]]:
    found = [(i, g) for i, g in enumerate(optimizer.param_groups) if key.selects(g)]
    if not found:
        raise ConfigError(f"no param group has {key.key!r} for the trial param {name!r}: "
                          f"pass mapping={{{name!r}: None}}")
    return found


def apply_params(params: Mapping[str, Any], optimizer: Any, *, scheduler: Any = None,
                 mapping: Mapping[str, Mapped] | None = None) -> dict[str, Any]:
    for name, key in _mapped(params, mapping):
        value = params[name]
        for index, group in _groups(optimizer, name, key):
            if key.key == "lr" and key.index is None and hasattr(scheduler, "base_lrs"):
                old = scheduler.base_lrs[index]
                group["lr"] = group["lr"] * value / old if old else value
                group["initial_lr"] = value
                scheduler.base_lrs[index] = value
            else:
                key.write(group, value)
    return check_params(params, optimizer, scheduler=scheduler, mapping=mapping)


def check_params(params: Mapping[str, Any], optimizer: Any, *, scheduler: Any = None,
                 mapping: Mapping[str, Mapped] | None = None) -> dict[str, Any]:
    in_effect: dict[str, Any] = {}
    for name, key in _mapped(params, mapping):
        for index, group in _groups(optimizer, name, key):
            held = key.read(group)
            if key.key == "lr" and key.index is None and hasattr(scheduler, "base_lrs"):
                held = scheduler.base_lrs[index]
            if not math.isclose(float(held), float(params[name]), rel_tol=1e-9):
                raise ParamMismatchError(f"param group {index} would train with "
                                         f"{name}={held!r}, not {params[name]!r}")
            in_effect.setdefault(name, held)
    return in_effect
