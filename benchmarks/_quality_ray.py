"""The Ray Tune side of the quality benchmark (quality.py): PBT and PB2 runs of a task.

Both Ray methods run the task's training function through the same function trainable
(``ray_trainable``) and the same ``run_ray``; only the scheduler and the way params appear in
Ray's config differ (``RayMethod``).

How pbtune params appear in Ray's config ("coordinates"), because Ray's PB2 takes only
continuous ``[low, high]`` bounds and models them linearly:

- ``Float``: its value; for ``ray-pb2``, a ``log=True`` Float is its base-10 logarithm, with
  bounds ``[log10(low), log10(high)]`` (the same bounds on the scale the space declares; on
  the raw scale PB2's GP would see 1e-4 and 1e-3 as the same point of [1e-4, 1e-1]). ``ray``
  keeps the raw value (``tune.uniform`` / ``tune.loguniform``), so its perturbation
  multiplies the value itself, as Ray users write it.
- ``Int(low, high)``: a real x in ``[low, high + 1)``, the value ``floor(x)`` clamped to
  ``[low, high]``; a member's initial value v enters as v + 0.5.
- ordered ``Choice`` of n values: a real x in ``[0, n)``, the value at index ``floor(x)``
  clamped to ``[0, n - 1]``; an initial value at index i enters as i + 0.5.

The same Int and Choice mapping serves both methods (``ray``: ``tune.uniform`` over those
ranges; ``ray-pb2``: those ranges as bounds); the trainable rounds. Ray PBT's perturbation
multiplies x by 1.2 or 0.8 and does not clip, so the rounding clamps. Unordered Choices are
not mapped (no task has one).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tasks import Task

import pbtune

RAY_STEP_FILE = "ray_step.json"


# -- params <-> Ray's config --------------------------------------------------------------------
def to_ray(param: Any, value: Any, log_coordinates: bool) -> float:
    """The coordinate in Ray's config of a pbtune param's value."""
    if isinstance(param, pbtune.Float):
        return math.log10(value) if log_coordinates and param.log else float(value)
    if isinstance(param, pbtune.Int):
        return int(value) + 0.5
    if isinstance(param, pbtune.Choice) and param.ordered:
        return param.index(value) + 0.5
    raise TypeError(f"no Ray Tune mapping for {param!r}")


def from_ray(param: Any, x: float, log_coordinates: bool) -> Any:
    """The pbtune value of a coordinate in Ray's config (the inverse of ``to_ray``)."""
    if isinstance(param, pbtune.Float):
        return 10.0 ** float(x) if log_coordinates and param.log else float(x)
    if isinstance(param, pbtune.Int):
        return min(max(math.floor(x), param.low), param.high)
    if isinstance(param, pbtune.Choice) and param.ordered:
        return param.choices[min(max(math.floor(x), 0), len(param.choices) - 1)]
    raise TypeError(f"no Ray Tune mapping for {param!r}")


def ray_bounds(param: Any) -> list[float]:
    """PB2's ``hyperparam_bounds`` entry: the param's range in PB2's coordinates."""
    if isinstance(param, pbtune.Float):
        if param.log:
            return [math.log10(param.low), math.log10(param.high)]
        return [param.low, param.high]
    if isinstance(param, pbtune.Int):
        return [param.low, param.high + 1.0]
    if isinstance(param, pbtune.Choice) and param.ordered:
        return [0.0, float(len(param.choices))]
    raise TypeError(f"no Ray Tune mapping for {param!r}")


def ray_domain(param: Any) -> Any:
    """Ray PBT's ``hyperparam_mutations`` entry: where a resample draws from."""
    from ray import tune

    if isinstance(param, pbtune.Float) and param.log:
        return tune.loguniform(param.low, param.high)
    low, high = ray_bounds(param)
    return tune.uniform(low, high)


# -- the two methods ----------------------------------------------------------------------------
def ray_pbt(task: Task) -> Any:
    """Ray Tune PBT, asynchronous, with its defaults (factors 1.2 / 0.8, no clipping)."""
    from ray.tune.schedulers import PopulationBasedTraining

    return PopulationBasedTraining(
        time_attr="step",
        metric=task.metric,
        mode="max",
        perturbation_interval=task.steps_per_trial,
        hyperparam_mutations={name: ray_domain(p) for name, p in task.space.items()},
        quantile_fraction=0.25,
        resample_probability=0.25,
    )


def ray_pb2(task: Task) -> Any:
    """Ray Tune PB2 (``ray.tune.schedulers.PB2``), the same interval and quantile."""
    from ray.tune.schedulers.pb2 import PB2

    return PB2(
        time_attr="step",
        metric=task.metric,
        mode="max",
        perturbation_interval=task.steps_per_trial,
        hyperparam_bounds={name: ray_bounds(p) for name, p in task.space.items()},
        quantile_fraction=0.25,
    )


@dataclass(frozen=True)
class RayMethod:
    """A Ray Tune method: its scheduler, and whether log Floats are log10 in its config."""

    scheduler: Callable[[Task], Any]
    log_coordinates: bool


RAY_METHODS = {
    "ray": RayMethod(ray_pbt, log_coordinates=False),
    "ray-pb2": RayMethod(ray_pb2, log_coordinates=True),
}


# -- the trainable and the run ------------------------------------------------------------------
def ray_trainable(config: dict[str, Any], task: Task) -> None:
    """Ray Tune function trainable: the task's training function, one block per iteration."""
    from ray import tune

    params = {name: from_ray(p, config[name], config["log_coordinates"])
              for name, p in task.space.items()}
    key = zlib.crc32(tune.get_context().get_trial_id().encode())
    step, parent = 0, None
    restored = tune.get_checkpoint()
    if restored is not None:
        # A private copy: to_directory() without a path gives every trial that restores the
        # same donor checkpoint the same shared directory, which the cleanup below would
        # delete under a concurrent reader.
        parent = Path(restored.to_directory(
            tempfile.mkdtemp(prefix="restore-", dir=config["scratch"])))
        step = json.loads((parent / RAY_STEP_FILE).read_text())["step"]
    while step < task.max_steps:
        end = min(step + task.steps_per_trial, task.max_steps)
        out = Path(tempfile.mkdtemp(prefix="iteration-", dir=config["scratch"]))
        number = zlib.crc32(out.name.encode())  # unique per iteration, as a pbtune trial's
        trial = pbtune.Trial(
            id=number, member=key, generation=0, params=params, start_step=step,
            end_step=end, parent_checkpoint=parent, checkpoint_dir=out,
            study_name=f"ray-{task.name}", seed=config["seed"],
        )
        metrics = dict(task.train(trial))
        (out / RAY_STEP_FILE).write_text(json.dumps({"step": end}))
        tune.report(
            {**metrics, "step": end, "steps_done": end - step},
            checkpoint=tune.Checkpoint.from_directory(str(out)),
        )
        if parent is not None:
            shutil.rmtree(parent, ignore_errors=True)
        step, parent = end, out
    if parent is not None:
        shutil.rmtree(parent, ignore_errors=True)


def run_ray(task: Task, method: RayMethod, seed: int, initial: list[Mapping[str, Any]],
            storage_root: Path) -> dict[str, Any]:
    """One run of a Ray Tune method from the initial population ``initial``; the same
    record as quality.run_pbtune's: ``done`` is (steps trained, step, fitness) per result in
    the order the driver received them."""
    from ray import tune

    scratch = storage_root / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    random.seed(seed)  # Ray's PBT draws its explore decisions from `random` in the driver
    np.random.seed(seed)  # and resamples tune domains (PB2: fits its GP) with np.random
    log = method.log_coordinates
    param_space: dict[str, Any] = {
        "seed": seed,
        "log_coordinates": log,
        "scratch": str(scratch),  # the trainable's own directories; removed with storage_root
        "member": tune.grid_search(list(range(task.population))),
    }
    for name, param in task.space.items():
        param_space[name] = tune.sample_from(
            lambda spec, name=name, param=param: to_ray(
                param, initial[spec.config.member][name], log)
        )

    class Collect(tune.Callback):
        """Every result of every trial, in the order the driver receives them."""

        def __init__(self) -> None:
            self.results: list[tuple[int, int, float]] = []

        def on_trial_result(self, iteration: int, trials: Any, trial: Any, result: dict[str, Any],
                            **info: Any) -> None:
            self.results.append(
                (int(result["steps_done"]), int(result["step"]), float(result[task.metric])))

    collect = Collect()
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(ray_trainable, task=task), {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(scheduler=method.scheduler(task), num_samples=1,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"quality-{task.name}-{seed}-{time.time_ns()}",
            storage_path=str(storage_root),
            stop={"step": task.max_steps},
            verbose=0,
            callbacks=[collect],
        ),
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        # PB2 fits a scikit-learn GP at every explore; its convergence warnings are not ours.
        warnings.filterwarnings("ignore", module="sklearn")
        grid = tuner.fit()
    wall = time.perf_counter() - started
    best: tuple[float, dict[str, Any]] = (-float("inf"), {})
    for result in grid:
        if result.error is not None:
            raise RuntimeError(f"Ray trial failed: {result.error}")
        final = result.metrics
        if final["step"] >= task.max_steps and final[task.metric] > best[0]:
            params = {n: from_ray(p, result.config[n], log) for n, p in task.space.items()}
            best = (float(final[task.metric]), params)
    return {"done": collect.results, "exploits": None, "wall_s": wall, "best_params": best[1]}
