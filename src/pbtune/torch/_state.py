"""`save` and `load`: a trial's PyTorch training state in one call each.

One file, ``pbtune_torch.pt`` in the trial's checkpoint directory, holds the state dicts
of the models, optimizers, LR schedulers and gradient scaler, the RNG states, the step
and the user's extra state. `load` restores all of it from the parent's checkpoint and
then applies the trial's params, which the restored optimizer would otherwise override.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pbtune._errors import CheckpointError, ConfigError
from pbtune.torch._params import Mapped, apply_params
from pbtune.trial import Trial

FILE = "pbtune_torch.pt"
FORMAT = 1


def save(
    trial: Trial,
    *,
    model: Any = None,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    **extra: Any,
) -> Path:
    """Write the state of ``model``, ``optimizer``, ``scheduler`` and ``scaler`` (each one
    object, a list, a dict of them, or None), the RNG states, the step (``end_step``) and
    any picklable ``extra`` into ``trial.checkpoint_dir``; return the file's path.

    Example::

        pbtune.torch.save(trial, model=model, optimizer=optimizer, scheduler=scheduler,
                          best_val=best_val)
    """
    objects = _objects(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
    state = {
        "format": FORMAT,
        "step": trial.end_step,
        "params": dict(trial.params),
        "state": {name: obj.state_dict() for name, obj in objects.items()},
        "rng": _rng_state(),
        "extra": extra,
    }
    path = Path(trial.checkpoint_dir) / FILE
    torch.save(state, path)
    return path


def load(
    trial: Trial,
    *,
    model: Any = None,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    mapping: Mapping[str, Mapped] | None = None,
    map_location: Any = "cpu",
    rng: bool = True,
    strict: bool = True,
) -> dict[str, Any]:
    """Restore what `save` wrote in ``trial.parent_checkpoint`` into the given objects
    (nothing for a member's first trial), then apply the trial's params to the
    optimizers and schedulers and check them; return the user's extra state ({} first).

    The params that go into optimizers (``lr``, ``weight_decay``, ``momentum``,
    ``betas``, ... see `OPTIMIZER_KEYS`; extend it with ``mapping``) are reported at
    ``start_step`` as ``applied_<name>``, read back from the optimizer (for ``lr`` with a
    ``scheduler``: its base learning rate, and the learning rate of the first step as
    ``scheduled_lr``). Build the scheduler before calling this and pass it here and to
    `save`, or its schedule starts again in every trial.
    ``map_location`` is where tensors are loaded before they are copied into the
    objects (which keep their devices). ``rng`` restores the parent's torch, NumPy and
    ``random`` states, so a member that goes on from its own checkpoint draws as one
    uninterrupted run would. With ``strict`` (the default), the objects given must be
    those the parent saved.

    Example::

        model = Net()
        optimizer = torch.optim.SGD(model.parameters(), lr=trial.params["lr"])
        extra = pbtune.torch.load(trial, model=model, optimizer=optimizer)
        for step in range(trial.start_step, trial.end_step):
            ...
        pbtune.torch.save(trial, model=model, optimizer=optimizer)
    """
    objects = _objects(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
    extra: dict[str, Any] = {}
    if trial.parent_checkpoint is not None:
        state = _read(Path(trial.parent_checkpoint), map_location)
        _check_step(state, trial)
        saved: dict[str, Any] = state["state"]
        if strict and set(saved) != set(objects):
            raise CheckpointError(
                f"the parent checkpoint {trial.parent_checkpoint} holds the state of "
                f"{_listed(saved)}, and load() was given {_listed(objects)}: pass the same "
                "objects to pbtune.torch.save and load (strict=False restores only those "
                "given, and the others start afresh in every trial: a scheduler from step 0)"
            )
        for name, obj in objects.items():
            if name in saved:
                obj.load_state_dict(saved[name])
        if rng:
            _set_rng_state(state["rng"])
        extra = dict(state["extra"])
    in_effect = apply_params(trial.params, optimizer, scheduler=scheduler, mapping=mapping)
    report_applied(trial, in_effect, optimizer, scheduler)
    return extra


def report_applied(trial: Trial, in_effect: Mapping[str, Any], optimizer: Any,
                   scheduler: Any = None) -> None:
    """Report at ``trial.start_step`` what `apply_params` put in effect, as
    ``applied_<name>``; with a ``scheduler``, also the learning rate of the trial's first
    step (the base as the schedule scales it there) as ``scheduled_lr``."""
    numbers = {f"applied_{name}": float(value) for name, value in in_effect.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    first = _first_group(optimizer)
    if scheduler and first is not None and "lr" in first:
        numbers["scheduled_lr"] = float(first["lr"])
    if numbers:
        trial.report(trial.start_step, **numbers)


def _first_group(optimizer: Any) -> dict[str, Any] | None:
    """The first param group of the (first) optimizer, if any."""
    if optimizer is None:
        return None
    if isinstance(optimizer, Mapping):
        optimizer = next(iter(optimizer.values()), None)
    elif not isinstance(optimizer, torch.optim.Optimizer):
        optimizer = next(iter(optimizer), None)
    groups: list[dict[str, Any]] = getattr(optimizer, "param_groups", None) or []
    return groups[0] if groups else None


def _objects(**given: Any) -> dict[str, Any]:
    """Every object to save or load by a stable name: ``model``, ``optimizer.1``,
    ``model.encoder``; each must have ``state_dict`` and ``load_state_dict``."""
    named: dict[str, Any] = {}
    for kind, value in given.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            items = [(f"{kind}.{key}", obj) for key, obj in value.items()]
        elif isinstance(value, Iterable) and not isinstance(value, torch.nn.Module):
            items = [(f"{kind}.{i}", obj) for i, obj in enumerate(value)]
        else:
            items = [(kind, value)]
        for name, obj in items:
            if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
                raise ConfigError(f"{name} is {type(obj).__name__}, which has no state_dict "
                                  "and load_state_dict: pass torch modules, optimizers, LR "
                                  "schedulers or a GradScaler, and other state as extra=")
            named[name] = obj
    return named


def _read(folder: Path, map_location: Any) -> dict[str, Any]:
    path = folder / FILE
    if not path.is_file():
        raise CheckpointError(
            f"the parent checkpoint {folder} has no {FILE}: its trial did not save with "
            "pbtune.torch.save; save every trial with it, or read the parent's files yourself"
        )
    # The file is this study's own checkpoint, and the user's extra state may be any
    # picklable object, which the weights-only unpickler refuses.
    state = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint that pbtune.torch.save wrote "
                              f"(format {FORMAT})")
    return state


def _check_step(state: Mapping[str, Any], trial: Trial) -> None:
    if state["step"] != trial.start_step:
        raise CheckpointError(
            f"the parent checkpoint {trial.parent_checkpoint} was saved at step "
            f"{state['step']}, but trial {trial.id} starts at step {trial.start_step}: "
            "save each trial's state with pbtune.torch.save(trial, ...) of that same trial"
        )


def _listed(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "nothing"


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "random": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        # A worker may have other GPUs than the parent's had: as many as both have.
        count = min(len(cuda), torch.cuda.device_count())
        for device in range(count):
            torch.cuda.set_rng_state(cuda[device].cpu(), device)
