"""Quality benchmark: how good a model each method finds with the same compute.

    python benchmarks/quality.py                       # every task and method, 7 seeds
    python benchmarks/quality.py --tasks toy --seeds 2 --methods tournament,ray

Tasks (benchmarks/tasks.py): ``toy`` (Jaderberg et al.'s toy quadratic), ``triangle`` (Ray
Tune's pbt_function.py toy), ``digits`` (the NumPy MLP of examples/digits_mlp.py) and, when
torch is installed (the optional ``torch`` extra), ``torch`` (a small PyTorch conv net on the
same digits).

Methods, all with the task's population size, ``steps_per_trial``, ``max_steps``, search
space and the same 2 workers; for one seed, all start from the same initial population (the
params pbtune draws for that seed) and the same initial model:

- ``tournament``: pbtune, ``Tournament()`` exploit (its default), ``Perturb()`` explore.
- ``truncation``: pbtune, ``Truncation(fraction=0.25)``, ``Perturb()``.
- ``random``: random search, run by pbtune with an exploit strategy that never copies
  (tasks.NoExploit): every initial member trains its initial params for the whole budget.
- ``ray``: Ray Tune ``PopulationBasedTraining`` (asynchronous, its defaults:
  ``quantile_fraction=0.25``, ``resample_probability=0.25``, ``perturbation_factors=(1.2,
  0.8)``, no clipping to bounds), through ``tune.Tuner`` with a function trainable that
  checkpoints with ``tune.report(metrics, checkpoint=...)``, ``reuse_actors=True``. One Ray
  iteration is one call of the task's training function, i.e. one block of
  ``steps_per_trial`` steps (a pbtune trial); ``time_attr`` is the step count,
  ``perturbation_interval = steps_per_trial`` steps, and trials stop at ``max_steps`` steps.
  The mutation spec has the same bounds as the pbtune space (``tune.uniform`` /
  ``tune.loguniform``). Every report also carries ``steps_done``, the steps that iteration
  trained (its end step minus the step of the checkpoint it started from). Each iteration
  gets a trial number of its own (as every pbtune trial has), which the noisy tasks seed
  their randomness with, and reads a restored checkpoint from a private copy.

pbtune's Perturb multiplies by 0.8 or 1.25 and clips to the bounds; Ray's multiplies by 1.2
or 0.8 and does not clip. Each uses its own defaults.

Equal compute. ``max_steps`` per member is not the same compute for every method: a member
that copies a parent that is behind it trains those steps again (Ray restarts an exploited
trial from its donor's last checkpoint; pbtune starts the copy at its parent's end step), so
the steps actually trained differ between methods and runs. The headline figure therefore
gives every method the same budget of steps trained, B = population x max_steps (the nominal
compute, what random search trains exactly):

1. The results of a run are ordered by the time they were reported: pbtune's COMPLETE trials
   by ``finished_at`` (ties by trial id); Ray's results in the order the driver's callback
   (``Collect.on_trial_result``) received them.
2. Steps trained accumulate along that order: ``end_step - start_step`` per pbtune trial,
   ``steps_done`` per Ray result. Result i has cumulative steps C_i (its own steps included).
3. **Best at equal compute** = the best fitness (the task's metric, maximised) of any result
   with C_i <= B, whatever its step. Methods that trained more than B get no credit for the
   results after the budget; methods that trained less keep what they had.

The targets use this figure: per task, pbtune's median (each strategy) >= Ray Tune PBT's and
> random search's. For reference the table also gives the **final fitness at max_steps**
(compute not equal): the best result at step ``max_steps`` in the run, however many steps
were trained to get there, and the steps trained in total (also as a multiple of B).

Figures per (task, method), over seeds: the median, quartiles (q25, q75), interquartile range
(IQR = q75 - q25, the sensitivity to the seed), min and max, and every seed's value. Per run
the JSON keeps ``trace``, the list of (cumulative steps, step, fitness) of every result in
report order, so any curve can be redrawn. ``quality_<task>.png``: the best fitness reported
so far against the cumulative steps trained, median over seeds with the IQR shaded, drawn
only where every seed of that method has a result (from each method's latest first result to
its earliest end), and a vertical line at B. Writes ``quality.json``, ``quality.md`` and
``quality_<task>.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import tasks  # noqa: E402
from tasks import TASKS, Task  # noqa: E402

import pbtune  # noqa: E402

METHODS = ("tournament", "truncation", "random", "ray")
WORKERS = 2
RESULTS = HERE / "results"


# -- pbtune -------------------------------------------------------------------------------------
def pbtune_exploit(method: str) -> pbtune.ExploitStrategy:
    if method == "tournament":
        return pbtune.Tournament()
    if method == "truncation":
        return pbtune.Truncation(fraction=0.25)
    if method == "random":
        return tasks.NoExploit()
    raise ValueError(method)


def make_study(task: Task, method: str, seed: int, scratch: Path,
               storage: str | None) -> pbtune.Study:
    return pbtune.create_study(
        name=f"quality-{task.name}-{method}-{seed}",
        space=dict(task.space),
        storage=storage,
        metric=task.metric,
        mode="max",
        population_size=task.population,
        steps_per_trial=task.steps_per_trial,
        max_steps=task.max_steps,
        exploit=pbtune_exploit(method),
        explore=pbtune.Perturb(),
        checkpoint_root=scratch / "checkpoints",
        seed=seed,
    )


def initial_population(task: Task, seed: int) -> list[dict[str, Any]]:
    """The params of every member's first trial, as pbtune draws them for ``seed``."""
    with tempfile.TemporaryDirectory(prefix="quality-init-") as scratch:
        study = make_study(task, "tournament", seed, Path(scratch), None)
        first = sorted((t for t in study.trials() if t.parent_id is None),
                       key=lambda t: t.member)
        return [dict(t.params) for t in first]


def run_pbtune(task: Task, method: str, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="quality-pbtune-") as scratch:
        root = Path(scratch)
        study = make_study(task, method, seed, root, f"sqlite:///{root / 'study.db'}")
        started = time.perf_counter()
        study.optimize(task.train, workers=WORKERS, show_progress=False)
        wall = time.perf_counter() - started
        complete = sorted(study.trials([pbtune.TrialState.COMPLETE]),
                          key=lambda t: (t.finished_at, t.id))
        done = [(t.end_step - t.start_step, t.end_step, float(t.metrics[task.metric]))
                for t in complete]
        return {
            "trace": cumulative(done),
            "steps_trained": sum(n for n, _, _ in done),
            "exploits": sum(1 for t in complete if t.decision == "exploit"),
            "wall_s": wall,
            "best_params": dict(study.best_trial.params),
        }


# -- Ray Tune -----------------------------------------------------------------------------------
RAY_STEP_FILE = "ray_step.json"


def ray_trainable(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: the task's training function, one block per iteration."""
    from ray import tune

    task = TASKS[config["task"]]
    params = {name: config[name] for name in task.space}
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
            id=number, number=number, member=key, generation=0, params=params, start_step=step,
            end_step=end, parent_checkpoint=parent, checkpoint_dir=out,
            study_name=f"ray-{config['task']}", seed=config["seed"],
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


def ray_domain(param: Any) -> Any:
    from ray import tune

    if not isinstance(param, pbtune.Float):
        raise TypeError(f"only Float params are mapped to Ray Tune here, got {param!r}")
    if param.log:
        return tune.loguniform(param.low, param.high)
    return tune.uniform(param.low, param.high)


def run_ray(task: Task, seed: int, storage_root: Path) -> dict[str, Any]:
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    initial = initial_population(task, seed)
    scratch = storage_root / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    random.seed(seed)  # Ray's PBT draws its explore decisions from `random` in the driver
    np.random.seed(seed)  # and resamples tune domains with np.random
    pbt = PopulationBasedTraining(
        time_attr="step",
        metric=task.metric,
        mode="max",
        perturbation_interval=task.steps_per_trial,
        hyperparam_mutations={name: ray_domain(p) for name, p in task.space.items()},
        quantile_fraction=0.25,
        resample_probability=0.25,
    )
    param_space: dict[str, Any] = {
        "task": task.name,
        "seed": seed,
        "scratch": str(scratch),  # the trainable's own directories; removed with storage_root
        "member": tune.grid_search(list(range(task.population))),
    }
    for name in task.space:
        param_space[name] = tune.sample_from(
            lambda spec, name=name: initial[spec.config.member][name]
        )
    class Collect(tune.Callback):
        """Every result of every trial, in the order the driver receives them."""

        def __init__(self) -> None:
            self.results: list[tuple[int, float, int]] = []

        def on_trial_result(self, iteration: int, trials: Any, trial: Any, result: dict[str, Any],
                            **info: Any) -> None:
            self.results.append(
                (int(result["step"]), float(result[task.metric]), int(result["steps_done"])))

    collect = Collect()
    tuner = tune.Tuner(
        tune.with_resources(ray_trainable, {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(scheduler=pbt, num_samples=1, reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"quality-{task.name}-{seed}-{time.time_ns()}",
            storage_path=str(storage_root),
            stop={"step": task.max_steps},
            verbose=0,
            callbacks=[collect],
        ),
    )
    started = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - started
    done = [(steps_done, step, value) for step, value, steps_done in collect.results]
    steps_trained = sum(n for n, _, _ in done)
    best: tuple[float, dict[str, Any]] = (-float("inf"), {})
    for result in grid:
        if result.error is not None:
            raise RuntimeError(f"Ray trial failed: {result.error}")
        final = result.metrics
        if final["step"] >= task.max_steps and final[task.metric] > best[0]:
            best = (float(final[task.metric]), {n: result.config[n] for n in task.space})
    return {"trace": cumulative(done), "steps_trained": steps_trained, "exploits": None,
            "wall_s": wall, "best_params": best[1]}


# -- figures ------------------------------------------------------------------------------------
def cumulative(done: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """(steps trained, step, fitness) in report order -> (cumulative steps, step, fitness)."""
    total, out = 0, []
    for steps, step, value in done:
        total += steps
        out.append((total, step, value))
    return out


def budget(task: Task) -> int:
    """B, the nominal compute: population x max_steps steps trained."""
    return task.population * task.max_steps


def best_at_budget(trace: list[tuple[int, int, float]], limit: int) -> float:
    """The best fitness of any result whose cumulative steps trained are <= ``limit``."""
    return max(v for c, _, v in trace if c <= limit)


def final_fitness(trace: list[tuple[int, int, float]], max_steps: int) -> float:
    """The best result at step ``max_steps`` (however many steps were trained)."""
    return max(v for _, s, v in trace if s == max_steps)


def best_so_far(trace: list[tuple[int, int, float]], grid: np.ndarray) -> np.ndarray:
    """Best fitness reported with cumulative steps <= x, at each x of ``grid``; NaN before the
    run's first result and after its last (its total steps trained)."""
    cums = np.array([c for c, _, _ in trace], dtype=float)
    best = np.maximum.accumulate(np.array([v for _, _, v in trace], dtype=float))
    index = np.searchsorted(cums, grid, side="right") - 1
    out = np.where(index >= 0, best[np.clip(index, 0, None)], np.nan)
    out[grid > cums[-1]] = np.nan
    return out


def stats(values: list[float]) -> dict[str, Any]:
    array = np.array(values, dtype=float)
    q25, q50, q75 = np.percentile(array, [25, 50, 75])
    return {"median": float(q50), "q25": float(q25), "q75": float(q75),
            "iqr": float(q75 - q25), "min": float(array.min()), "max": float(array.max()),
            "per_seed": [float(v) for v in array]}


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        by[run["task"]][run["method"]].append(run)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for task_name, methods in by.items():
        out[task_name] = {}
        for method, group in methods.items():
            group = sorted(group, key=lambda r: r["seed"])
            out[task_name][method] = {
                "seeds": [r["seed"] for r in group],
                "equal": stats([r["equal"] for r in group]),
                "final": stats([r["final"] for r in group]),
                "steps_trained": stats([r["steps_trained"] for r in group]),
                "wall_s_median": float(np.median([r["wall_s"] for r in group])),
            }
    return out


def targets(summary: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """pbtune's median best at equal compute >= Ray's and > random search's, per task and
    strategy."""
    out: dict[str, dict[str, Any]] = {}
    for task_name, methods in summary.items():
        row: dict[str, Any] = {}
        for mine in ("tournament", "truncation"):
            if mine not in methods:
                continue
            m = methods[mine]["equal"]["median"]
            if "ray" in methods:
                row[f"{mine} >= ray"] = bool(m >= methods["ray"]["equal"]["median"])
            if "random" in methods:
                row[f"{mine} > random"] = bool(m > methods["random"]["equal"]["median"])
        out[task_name] = row
    return out


def digits_for(task_name: str) -> int:
    return 6 if task_name == "toy" else 2 if task_name == "triangle" else 4


DEFINITION = (
    "**Best at equal compute** (the headline figure; the targets use it): every method gets "
    "the same budget of steps trained, B = population x max_steps. A run's results are "
    "ordered by the time they were reported (pbtune: COMPLETE trials by `finished_at`; Ray "
    "Tune: the order its driver callback received them); the steps each trained (pbtune: "
    "`end_step - start_step` per trial; Ray: `steps_done` per result, its end step minus the "
    "step of the checkpoint it started from) accumulate along that order, and the figure is "
    "the best fitness of any result whose cumulative steps trained are <= B, at whatever "
    "step. **Final at max_steps** (for reference only, compute not equal): the best result "
    "at step max_steps, however many steps the run trained to get there. *Steps trained*: "
    "all the steps the run trained, median over seeds and as a multiple of B."
)


def markdown(summary: Mapping[str, Any], checks: Mapping[str, Any], meta: Mapping[str, Any]
             ) -> str:
    lines = [
        "# Quality at equal compute",
        "",
        f"{meta['seeds']} seeds per (task, method), {WORKERS} workers; median, quartiles "
        "(q25-q75), interquartile range (IQR = q75 - q25, the spread across seeds), min and "
        "max over seeds.",
        "",
        DEFINITION,
        "",
        "| task (B) | method | **median at B** | q25 | q75 | IQR | min | max "
        "| final at max_steps: median | IQR | steps trained (x B) | wall s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task_name, methods in summary.items():
        nd = digits_for(task_name)
        b = meta["tasks"][task_name]["budget"]
        for method in METHODS:
            if method not in methods:
                continue
            s = methods[method]
            e, f = s["equal"], s["final"]
            steps = s["steps_trained"]["median"]
            lines.append(
                f"| {task_name} ({b}) | {method} | **{e['median']:.{nd}f}** | "
                f"{e['q25']:.{nd}f} | {e['q75']:.{nd}f} | {e['iqr']:.{nd}f} | "
                f"{e['min']:.{nd}f} | {e['max']:.{nd}f} | {f['median']:.{nd}f} | "
                f"{f['iqr']:.{nd}f} | {steps:.0f} ({steps / b:.2f}) | "
                f"{s['wall_s_median']:.1f} |"
            )
    lines += ["", "Targets (median best at equal compute, B):", ""]
    for task_name, row in checks.items():
        shown = ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in row.items())
        lines.append(f"- {task_name}: {shown}")
    lines += ["", "Per seed, best at equal compute (seeds in order), then steps trained:", ""]
    for task_name, methods in summary.items():
        nd = digits_for(task_name)
        for method in METHODS:
            if method not in methods:
                continue
            s = methods[method]
            values = " ".join(f"{v:.{nd}f}" for v in s["equal"]["per_seed"])
            steps = " ".join(f"{v:.0f}" for v in s["steps_trained"]["per_seed"])
            lines.append(f"- {task_name} {method}: {values}; steps {steps}")
    lines += [
        "",
        "`quality_<task>.png`: the best fitness reported so far against the cumulative steps "
        "trained, median over seeds, IQR shaded, drawn where every seed of the method has a "
        "result; the dashed vertical line is B.",
        "",
        f"Machine: {meta['machine']}; Python {meta['python']}; pbtune {meta['pbtune']} "
        f"(imported from {meta['pbtune_path']}; {source(meta)}); ray {meta.get('ray')}; "
        f"torch {meta.get('torch')}; total {meta['total_s']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def source(meta: Mapping[str, Any]) -> str:
    head, modified = meta["checkout"]["head"], meta["checkout"]["src_modified"]
    if Path(meta["pbtune_path"]) == HERE.parent / "src" / "pbtune":
        return f"this checkout at {head}, src/ modified: {modified}"
    return f"not this checkout's src/; the checkout was at {head}"


def plot(runs: list[dict[str, Any]], task: Task, out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    mine = [r for r in runs if r["task"] == task.name]
    if not mine:
        return None
    b = budget(task)
    grid = np.linspace(0, max(r["trace"][-1][0] for r in mine), 600)
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for method in METHODS:
        group = [r for r in mine if r["method"] == method]
        if not group:
            continue
        curves = np.array([best_so_far(r["trace"], grid) for r in group])
        q25, q50, q75 = np.percentile(curves, [25, 50, 75], axis=0)  # NaN if a seed has none
        (line,) = ax.plot(grid, q50, label=f"{method} (n={len(group)})")
        ax.fill_between(grid, q25, q75, color=line.get_color(), alpha=0.2)
    ax.axvline(b, color="black", linestyle="--", linewidth=1,
               label=f"B = {task.population} x {task.max_steps} = {b}")
    ax.set_xlabel("steps trained, cumulative over the population (in report order)")
    ax.set_ylabel(f"best {task.metric} reported so far")
    ax.set_title(task.title, fontsize=9)
    if task.name == "toy":
        ax.set_ylim(0.9, 1.205)
    elif task.name in ("digits", "torch"):
        ax.set_ylim(0.9, 0.99)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"quality_{task.name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Quality at equal compute: pbtune vs Ray Tune "
                                     "PBT vs random search.")
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help="comma-separated, from: %(default)s")
    parser.add_argument("--seeds", type=int, default=7, help="seeds 0..N-1 (default: 7)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated, from: %(default)s")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="output directory (default: benchmarks/results)")
    args = parser.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.methods = [m for m in args.methods.split(",") if m]
    for t in args.tasks:
        if t == "torch" and t not in TASKS:
            parser.error("task 'torch' needs torch: pip install -e '.[torch]'")
        if t not in TASKS:
            parser.error(f"unknown task {t!r}")
    for m in args.methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}")
    return args


def checkout() -> dict[str, Any]:
    """The git commit of this checkout and whether its src/ had uncommitted changes (pbtune
    may have been imported from elsewhere: see ``pbtune_path``)."""
    root = HERE.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"],
                               check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"head": None, "src_modified": None}
    return {"head": head, "src_modified": bool(dirty)}


def torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return str(torch.__version__)


def start_ray() -> str | None:
    import ray

    # Ray's worker processes import this module and tasks.py by name.
    paths = [str(HERE), str(tasks.EXAMPLES)]
    os.environ["PYTHONPATH"] = os.pathsep.join(
        paths + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    return str(ray.__version__)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    ray_version = None
    if "ray" in args.methods:
        try:
            ray_version = start_ray()
        except ImportError:
            print("ray is not installed (pip install -e '.[bench]'): skipping method 'ray'")
            args.methods = [m for m in args.methods if m != "ray"]
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "pbtune": pbtune.__version__,
        "pbtune_path": str(Path(pbtune.__file__).resolve().parent),
        "checkout": checkout(),
        "ray": ray_version,
        "seeds": args.seeds,
        "workers": WORKERS,
        "torch": torch_version() if "torch" in args.tasks else None,
        "definition": DEFINITION,
        "tasks": {
            t: {"population": TASKS[t].population, "steps_per_trial": TASKS[t].steps_per_trial,
                "max_steps": TASKS[t].max_steps, "budget": budget(TASKS[t]),
                "metric": TASKS[t].metric,
                "space": {n: repr(p) for n, p in TASKS[t].space.items()}}
            for t in args.tasks
        },
    }
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="quality-ray-storage-") as ray_root:
        for task_name in args.tasks:
            task = TASKS[task_name]
            for seed in range(args.seeds):
                for method in args.methods:
                    if method == "ray":
                        result = run_ray(task, seed, Path(ray_root))
                    else:
                        result = run_pbtune(task, method, seed)
                    equal = best_at_budget(result["trace"], budget(task))
                    final = final_fitness(result["trace"], task.max_steps)
                    runs.append({"task": task_name, "method": method, "seed": seed,
                                 "equal": equal, "final": final, **result})
                    nd = digits_for(task_name)
                    print(f"{task_name:9s} seed {seed} {method:10s} at B {equal:.{nd}f}  "
                          f"final {final:.{nd}f}  steps {result['steps_trained']:5d} "
                          f"(B {budget(task)})  {result['wall_s']:6.1f} s  "
                          f"[{time.perf_counter() - began:6.0f} s]", flush=True)
    summary = summarise(runs)
    checks = targets(summary)
    meta["total_s"] = time.perf_counter() - began
    data = {"meta": meta, "summary": summary, "targets": checks, "runs": runs}
    (args.out / "quality.json").write_text(json.dumps(data, indent=1, allow_nan=True) + "\n")
    table = markdown(summary, checks, meta)
    (args.out / "quality.md").write_text(table)
    for task_name in args.tasks:
        plot(runs, TASKS[task_name], args.out)
    print()
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
