"""A trial's params applied to PyTorch optimizers and LR schedulers, then checked.

An optimizer's ``state_dict`` holds its param groups' hyperparameters as well as its
moments: loading a donor's optimizer brings back the donor's learning rate, and a member
that exploited it would train on with the donor's params while the controller recorded
its own. So the params go in after every restore, and are checked before training.
With an LR scheduler, a trial's ``lr`` is the base learning rate the schedule scales.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

from pbtune._errors import ConfigError, PbtuneError

Group = dict[str, Any]


class ParamMismatchError(PbtuneError):
    """What an optimizer would train with differs from the trial's params."""


@dataclass(frozen=True)
class GroupKey:
    """Where a trial param goes in an optimizer's param groups.

    ``key`` is the param-group entry (``"lr"``, ``"weight_decay"``); ``index`` picks one
    element of a tuple entry (``GroupKey("betas", 0)`` is Adam's beta1); ``where`` picks
    the param groups that take the value (default: every group that has ``key``).

    Example::

        # Keep a no-decay group (biases, norms) at weight decay 0:
        mapping = {"weight_decay": GroupKey("weight_decay", where=lambda g: g["weight_decay"] > 0)}
    """

    key: str
    index: int | None = None
    where: Callable[[Mapping[str, Any]], bool] | None = None

    def selects(self, group: Mapping[str, Any]) -> bool:
        return self.key in group and (self.where is None or bool(self.where(group)))

    def read(self, group: Mapping[str, Any]) -> Any:
        value = group[self.key]
        return _plain(value[self.index] if self.index is not None else value)

    def write(self, group: Group, value: Any) -> None:
        if self.index is not None:
            items = list(group[self.key])
            items[self.index] = _like(items[self.index], value)
            group[self.key] = tuple(items)
        elif isinstance(value, (list, tuple)):
            group[self.key] = tuple(_like(old, new) for old, new in
                                    zip(group[self.key], value, strict=True))
        else:
            group[self.key] = _like(group[self.key], value)


Mapped = str | GroupKey | None

OPTIMIZER_KEYS: Mapping[str, GroupKey] = MappingProxyType({
    "lr": GroupKey("lr"),
    "learning_rate": GroupKey("lr"),
    "weight_decay": GroupKey("weight_decay"),
    "momentum": GroupKey("momentum"),
    "dampening": GroupKey("dampening"),
    "betas": GroupKey("betas"),
    "beta1": GroupKey("betas", 0),
    "beta2": GroupKey("betas", 1),
    "eps": GroupKey("eps"),
    "alpha": GroupKey("alpha"),
    "rho": GroupKey("rho"),
    "lr_decay": GroupKey("lr_decay"),
})
"""The trial params that go into optimizers by default, by name. Extend or override it
with ``mapping={"my_name": "weight_decay"}``; ``mapping={"momentum": None}`` leaves a
param to the user's code."""


def apply_params(
    params: Mapping[str, Any],
    optimizer: Any,
    *,
    scheduler: Any = None,
    mapping: Mapping[str, Mapped] | None = None,
) -> dict[str, Any]:
    """Set each of ``params`` that ``mapping`` (over `OPTIMIZER_KEYS`) names into the
    param groups of ``optimizer`` (one, a list, or None); return the values now in effect.

    With LR ``scheduler`` s, ``lr`` is their base learning rate: the base is set to the
    trial's value and the current learning rate to that base times the schedule's factor
    where the scheduler is (its last lr / its base), so a restored schedule goes on from
    its step, and a fresh one starts, with this trial's ``lr``, whichever of the optimizer
    and the scheduler was restored. A mapped param that no group has is a `ConfigError`:
    an optimizer that cannot take it.

    Example::

        optimizer.load_state_dict(donor["optimizer"])   # brings the donor's lr back
        pbtune.torch.apply_params(trial.params, optimizer, scheduler=scheduler)
    """
    optimizers = _items(optimizer, torch.optim.Optimizer, "optimizer")
    schedulers = _schedulers(scheduler)
    for name, key in _mapped(params, mapping):
        value = _value(name, params[name])
        groups = list(_selected(optimizers, name, key))
        for opt, index, group in groups:
            attached = _attached(schedulers, opt)
            if key.key == "lr" and key.index is None and any(
                    hasattr(s, "base_lrs") for s in attached):
                _rescale(opt, index, group, value, attached)
            else:
                key.write(group, value)
                if key.key == "lr" and key.index is None and "initial_lr" in group:
                    # A restored optimizer brings the donor's base too, and a scheduler
                    # built after this call would start from it.
                    group["initial_lr"] = value
    return check_params(params, optimizer, scheduler=scheduler, mapping=mapping)


def check_params(
    params: Mapping[str, Any],
    optimizer: Any,
    *,
    scheduler: Any = None,
    mapping: Mapping[str, Mapped] | None = None,
) -> dict[str, Any]:
    """Raise `ParamMismatchError` unless every optimizer group that a mapped param selects
    holds that param's value (the base learning rate of a scheduled ``lr``) to a relative
    1e-6, the precision of a float32 learning rate; return the values in effect."""
    optimizers = _items(optimizer, torch.optim.Optimizer, "optimizer")
    schedulers = _schedulers(scheduler)
    in_effect: dict[str, Any] = {}
    for name, key in _mapped(params, mapping):
        wanted = _value(name, params[name])
        for opt, index, group in _selected(optimizers, name, key):
            scaling = [s for s in _attached(schedulers, opt) if hasattr(s, "base_lrs")]
            held = [key.read(group)]
            if key.key == "lr" and key.index is None and scaling:
                held = [_plain(s.base_lrs[index]) for s in scaling]
                held += [_plain(group["initial_lr"])] if "initial_lr" in group else []
            for value in held:
                if not _same(value, wanted):
                    raise ParamMismatchError(
                        f"{type(opt).__name__} param group {index} would train with "
                        f"{name}={value!r}, but the trial's params say {wanted!r}: apply the "
                        "trial's params after restoring optimizer or scheduler state "
                        "(pbtune.torch.load does; else call pbtune.torch.apply_params)"
                    )
            in_effect.setdefault(name, held[0])
    return in_effect


def _mapped(params: Mapping[str, Any],
            mapping: Mapping[str, Mapped] | None) -> Iterator[tuple[str, GroupKey]]:
    merged: dict[str, Mapped] = {**OPTIMIZER_KEYS, **(mapping or {})}
    for name, key in merged.items():
        if key is None or name not in params:
            continue
        if isinstance(key, str):
            key = GroupKey(key)
        if not isinstance(key, GroupKey):
            raise ConfigError(f"mapping[{name!r}] is {key!r}: give a param-group key such as "
                              "'lr', a pbtune.torch.GroupKey, or None to leave it unmapped")
        yield name, key


def _selected(optimizers: Sequence[torch.optim.Optimizer], name: str,
              key: GroupKey) -> Iterator[tuple[torch.optim.Optimizer, int, Group]]:
    found = False
    for opt in optimizers:
        for index, group in enumerate(opt.param_groups):
            if key.selects(group):
                found = True
                yield opt, index, group
    if optimizers and not found:
        kinds = ", ".join(sorted({type(opt).__name__ for opt in optimizers}))
        raise ConfigError(
            f"the trial param {name!r} maps to the param-group key {key.key!r}, which no "
            f"param group of {kinds} has: pass mapping={{{name!r}: None}} to leave it to your "
            "code, or map it to a key the optimizer has"
        )


def _attached(schedulers: list[Any], opt: torch.optim.Optimizer) -> list[Any]:
    """The schedulers of ``opt``, outermost first. A wrapped optimizer (Accelerate's,
    Lightning's) shares the wrapped one's ``param_groups`` list: that pairs them too."""
    return [s for s in schedulers if s.optimizer is opt
            or getattr(s.optimizer, "param_groups", None) is opt.param_groups]


def _rescale(opt: torch.optim.Optimizer, index: int, group: Group, value: float,
             attached: list[Any]) -> None:
    """A new base learning rate for a scheduled group. The scheduler says where the
    schedule is: its last lr over its base is the factor at its step (1 for most fresh
    ones), whatever the optimizer's own lr is (a restored donor's, or a fresh one's)."""
    scaling = [s for s in attached if hasattr(s, "base_lrs")]
    base = _plain(scaling[0].base_lrs[index])
    position = next((s for s in attached if getattr(s, "_last_lr", None)), None)
    last = _plain(position.get_last_lr()[index]) if position is not None else base
    factor = last / base if base else 1.0
    group["lr"] = _like(group["lr"], value * factor)
    group["initial_lr"] = value
    for each in scaling:
        each.base_lrs[index] = value
    for each in attached:
        if getattr(each, "_last_lr", None):  # what get_last_lr() answers until a step
            each._last_lr = [_plain(g["lr"]) for g in opt.param_groups]


def _schedulers(scheduler: Any) -> list[Any]:
    """The schedulers given, with those inside `SequentialLR` and `ChainedScheduler`."""
    flat: list[Any] = []
    for each in _items(scheduler, object, "scheduler"):
        if not hasattr(each, "optimizer"):
            raise ConfigError(f"scheduler {each!r} is not an LR scheduler (it has no "
                              "optimizer): pass torch.optim.lr_scheduler objects")
        flat.append(each)
        flat.extend(_schedulers(getattr(each, "_schedulers", None)))
    return flat


def _items(given: Any, kind: type, what: str) -> list[Any]:
    if given is None:
        return []
    if isinstance(given, Mapping):
        items = list(given.values())
    elif isinstance(given, Iterable) and not isinstance(given, (str, bytes)):
        items = list(given)
    else:
        items = [given]
    for item in items:
        if not isinstance(item, kind):
            raise ConfigError(f"{what} {item!r} is not a {kind.__module__}.{kind.__name__}")
    return items


def _value(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, list, tuple)):
        raise ConfigError(f"the trial param {name!r} is {value!r}, which an optimizer cannot "
                          f"take: pass mapping={{{name!r}: None}} to leave it to your code")
    return value


def _plain(value: Any) -> Any:
    """A number held as a tensor (a capturable optimizer's lr) as a Python number."""
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


def _like(old: Any, new: Any) -> Any:
    """``new`` in the form ``old`` had: a tensor lr stays a tensor (in place)."""
    if isinstance(old, torch.Tensor):
        old.fill_(float(new))
        return old
    if isinstance(new, list):
        return tuple(new)
    if isinstance(old, float) and isinstance(new, int):
        return float(new)
    return new


def _same(held: Any, wanted: Any) -> bool:
    if isinstance(held, tuple) or isinstance(wanted, (list, tuple)):
        if not isinstance(held, tuple) or not isinstance(wanted, (list, tuple)):
            return False
        return len(held) == len(wanted) and all(map(_same, held, wanted))
    try:
        return math.isclose(float(held), float(wanted), rel_tol=1e-6, abs_tol=1e-12)
    except (TypeError, ValueError):
        return bool(held == wanted)
