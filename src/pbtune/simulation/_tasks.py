"""Surrogate tasks: a trial's training replaced by a cheap function of its params, its
parent's state and its steps, so a simulated study exploits and warm-starts as a real one.

A surrogate task is called as ``task(params, state, start_step, end_step, rng)``:
``state`` is what the parent's trial returned (None for a first trial), ``rng`` a NumPy
generator seeded by the study's seed and the trial's id. It returns an `Outcome`: the new
state (never the parent's, changed in place: a parent may have several children), the
metrics, and the virtual seconds the training took. A plain tuple
``(state, metrics, seconds)`` is read the same way.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pbtune._errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from pbtune.trial import Trial

STATE_FILE = "surrogate.json"


class Outcome(NamedTuple):
    """What a surrogate task returns for one trial."""

    state: Any
    metrics: dict[str, float]
    seconds: float


Task = Callable[[Mapping[str, Any], Any, int, int, "np.random.Generator"], Any]


def trial_rng(seed: int | None, trial_id: int) -> np.random.Generator:
    """The generator a trial's surrogate draws from: the same in a simulation and in a
    real run of the same study (see `as_train`)."""
    import numpy as np

    return np.random.default_rng([seed or 0, trial_id])


def run_task(task: Task, params: Mapping[str, Any], state: Any, start_step: int,
             end_step: int, rng: np.random.Generator) -> Outcome:
    """Call ``task`` and check what it returned: an `Outcome` with a positive, finite
    duration."""
    returned = task(params, state, start_step, end_step, rng)
    try:
        new_state, metrics, seconds = returned
        seconds = float(seconds)
    except (TypeError, ValueError):
        raise ConfigError(
            f"a surrogate task returns (state, metrics, seconds), got {returned!r}: return "
            "pbtune.simulation.Outcome(state=..., metrics={...}, seconds=...)") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"a surrogate task's seconds must be finite and >= 0, got {seconds}")
    return Outcome(new_state, dict(metrics), seconds)


@dataclass(frozen=True)
class Surrogate:
    """A built-in surrogate task, with the study settings it is meant for (``defaults``:
    `create_study` keyword arguments that the caller's own override)."""

    name: str
    fn: Task
    defaults: dict[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()

    def __call__(self, params: Mapping[str, Any], state: Any, start_step: int,
                 end_step: int, rng: np.random.Generator) -> Outcome:
        return self.fn(params, state, start_step, end_step, rng)  # type: ignore[no-any-return]


# -- Jaderberg et al.'s toy quadratic -----------------------------------------------------
def toy(params: Mapping[str, Any], state: Any, start_step: int, end_step: int,
        rng: np.random.Generator, *, step_s: float = 1.0) -> Outcome:
    """The toy of Jaderberg et al. (2017, section 4.1): maximise Q(θ) = 1.2 - θ0² - θ1²
    by gradient ascent on the surrogate 1.2 - h0·θ0² - h1·θ1², from θ = (0.9, 0.9), with a
    step size of 0.01. A worker's hyperparameters h only ever move some of θ, so only
    exploiting (copying θ) and exploring (new h) together reach the optimum 1.2."""
    theta = list(state) if state is not None else [0.9, 0.9]
    steps = end_step - start_step
    for i, h in enumerate((float(params["h0"]), float(params["h1"]))):
        theta[i] *= (1.0 - 0.02 * h) ** steps  # θ += 0.01 · ∂/∂θ(-h θ²), steps times
    q = 1.2 - theta[0] ** 2 - theta[1] ** 2
    return Outcome(theta, {"q": q}, steps * step_s)


# -- the noisy quadratic model ------------------------------------------------------------
NQM_DIMENSIONS = 100
NQM_MAX_LOSS = 1e12  # a diverged run reports a large loss, never inf (inf fails a trial)


def nqm(params: Mapping[str, Any], state: Any, start_step: int, end_step: int,
        rng: np.random.Generator, *, device_batch: int = 64, step_s: float = 0.1,
        eval_noise: float = 0.01) -> Outcome:
    """The noisy quadratic model of Zhang et al. (NeurIPS 2019): SGD on a quadratic loss
    ½ Σ hᵢ θᵢ² with curvatures hᵢ = 1/i (100 dimensions) and gradient noise of covariance
    H/B for a batch size B. Each dimension's second moment E[θᵢ²] moves, per step at
    learning rate α, to (1 - αhᵢ)² E[θᵢ²] + α² hᵢ / B, in closed form over a trial's steps.

    The schedules matter as in deep learning: a large α makes fast progress on the flat
    directions but stalls at a noise floor ∝ α / B, so the best runs decay α late or grow
    B; an α above 2 diverges. A step takes ``step_s`` virtual seconds per ``device_batch``
    examples (a larger batch is slower per step), and the reported loss carries a relative
    ``eval_noise``. Params: ``lr`` and ``batch_size``."""
    import numpy as np

    alpha = float(params["lr"])
    batch = max(1.0, float(params["batch_size"]))
    h = 1.0 / np.arange(1, NQM_DIMENSIONS + 1)
    moment = np.asarray(state, dtype=float) if state is not None else np.ones(NQM_DIMENSIONS)
    steps = end_step - start_step
    ratio = (1.0 - alpha * h) ** 2
    noise = alpha**2 * h / batch
    with np.errstate(over="ignore", invalid="ignore"):
        decay = ratio**steps
        series = np.where(np.isclose(ratio, 1.0), steps, (1.0 - decay) / (1.0 - ratio))
        moment = np.minimum(decay * moment + noise * series, NQM_MAX_LOSS)
    moment = np.nan_to_num(moment, nan=NQM_MAX_LOSS, posinf=NQM_MAX_LOSS)
    loss = min(0.5 * float(h @ moment), NQM_MAX_LOSS)
    measured = loss * math.exp(eval_noise * float(rng.standard_normal()))
    seconds = steps * step_s * math.ceil(batch / device_batch)
    return Outcome(moment.tolist(), {"loss": measured, "expected_loss": loss}, seconds)


TOY = Surrogate(
    "toy", toy, needs=("h0", "h1"),
    defaults={
        "space": {"h0": {"type": "float", "low": 0.0, "high": 1.0},
                  "h1": {"type": "float", "low": 0.0, "high": 1.0}},
        "metric": "q", "mode": "max", "population_size": 10, "steps_per_trial": 4,
        "max_steps": 200,
    },
)
NQM = Surrogate(
    "nqm", nqm, needs=("lr", "batch_size"),
    defaults={
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1.5, "log": True},
                  "batch_size": {"type": "int", "low": 8, "high": 1024, "log": True}},
        "metric": "loss", "mode": "min", "population_size": 16, "steps_per_trial": 50,
        "max_steps": 2000,
    },
)
BUILT_IN = {"toy": TOY, "nqm": NQM}


def resolve_task(spec: str | Task) -> Task:
    """``"toy"``, ``"nqm"``, ``"path/to/file.py:function"``, ``"module:function"``, or a
    callable, as the surrogate task to run."""
    if not isinstance(spec, str):
        if not callable(spec):
            raise ConfigError(f"a surrogate task is a function or a name, got {spec!r}")
        return spec
    if spec in BUILT_IN:
        return BUILT_IN[spec]
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise ConfigError(
            f"unknown surrogate task {spec!r}: use toy, nqm, or FILE.py:FUNCTION (a function "
            "(params, state, start_step, end_step, rng) -> (state, metrics, seconds))")
    module = _load_module(where)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"surrogate task {spec!r}: {where} has no function {name!r}")
    return fn  # type: ignore[no-any-return]


def _load_module(where: str) -> Any:
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ConfigError(f"surrogate task file {where!r} not found")
        spec = importlib.util.spec_from_file_location(f"pbtune_surrogate_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(where)
    except ImportError as error:
        raise ConfigError(f"cannot import surrogate task module {where!r}: {error}") from None


def check_params(task: Task, names: list[str]) -> None:
    """A built-in task's params must be in the study's space."""
    needs = getattr(task, "needs", ())
    missing = [n for n in needs if n not in names]
    if missing:
        raise ConfigError(
            f"surrogate task {getattr(task, 'name', task)!r} reads params "
            f"{', '.join(map(repr, needs))}, and the study's space lacks "
            f"{', '.join(map(repr, missing))}: add them to the space (space has: "
            f"{', '.join(map(repr, names)) or 'nothing'})")


def as_train(task: Task | str, seed: int | None = None) -> SurrogateTrain:
    """``task`` as a real training function: its state is a JSON checkpoint, its rng the
    simulation's (`trial_rng`), its seconds are not slept. A real run of a study with one
    worker then makes the decisions a simulation of it makes, in the same order, which is
    how a simulation is checked against the real thing. ``seed``: the study's (by
    default, read from the trial)."""
    return SurrogateTrain(resolve_task(task), seed)


@dataclass(frozen=True)
class SurrogateTrain:
    """A surrogate task as a training function (see `as_train`); worker processes can be
    sent it when the task is a module's top-level function or a built-in."""

    task: Task
    seed: int | None = None

    def __call__(self, trial: Trial) -> dict[str, float]:
        state = None
        if trial.parent_checkpoint is not None:
            state = json.loads((trial.parent_checkpoint / STATE_FILE).read_text())
        seed = self.seed if self.seed is not None else trial.seed
        outcome = run_task(self.task, trial.params, state, trial.start_step, trial.end_step,
                           trial_rng(seed, trial.id))
        (trial.checkpoint_dir / STATE_FILE).write_text(json.dumps(outcome.state))
        return outcome.metrics
