"""PyTorch training state for pbtune trials: `save` and `load` in one call each, with
the trial's params applied to the optimizers after every restore, and checked.

Install with ``pip install 'pbtune[torch]'``; ``import pbtune`` alone never imports torch.

Example::

    import pbtune.torch

    def train(trial: pbtune.Trial) -> dict[str, float]:
        model = Net()
        optimizer = torch.optim.AdamW(model.parameters(), lr=trial.params["lr"])
        pbtune.torch.load(trial, model=model, optimizer=optimizer)  # the trial's lr, checked
        for step in range(trial.start_step, trial.end_step):
            ...
        pbtune.torch.save(trial, model=model, optimizer=optimizer)
        return {"accuracy": evaluate(model)}
"""

from pbtune._errors import MissingExtraError

try:
    import torch as _torch  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the installation
    raise MissingExtraError(
        f"pbtune.torch needs PyTorch, which cannot be imported ({error}): "
        "pip install 'pbtune[torch]'"
    ) from error

from pbtune.torch._params import (
    OPTIMIZER_KEYS,
    GroupKey,
    ParamMismatchError,
    apply_params,
    check_params,
)
from pbtune.torch._state import FILE, load, report_applied, save

__all__ = [
    "FILE",
    "OPTIMIZER_KEYS",
    "GroupKey",
    "ParamMismatchError",
    "apply_params",
    "check_params",
    "load",
    "report_applied",
    "save",
]
