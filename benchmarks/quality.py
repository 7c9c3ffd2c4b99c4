"""Quality benchmark: how good a model each method finds with the same compute.

    python benchmarks/quality.py                       # every task and method, 5 seeds
    python benchmarks/quality.py --tasks toy --seeds 2 --methods tournament,ray

Tasks (benchmarks/tasks.py): ``toy`` (Jaderberg et al.'s toy quadratic), ``triangle`` (Ray
Tune's pbt_function.py toy) and ``digits`` (the NumPy MLP of examples/digits_mlp.py).

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
  checkpoints with ``tune.report(metrics, checkpoint=...)``. One Ray iteration is one call of
  the task's training function, i.e. one block of ``steps_per_trial`` steps (a pbtune trial);
  ``time_attr`` is the step count, ``perturbation_interval = steps_per_trial`` steps, and
  trials stop at ``max_steps`` steps. The mutation spec has the same bounds as the pbtune
  space (``tune.uniform`` / ``tune.loguniform``).

pbtune's Perturb multiplies by 0.8 or 1.25 and clips to the bounds; Ray's multiplies by 1.2
or 0.8 and does not clip. Each uses its own defaults.

Figures per (task, method), over seeds: the median and interquartile range (IQR) of the
final fitness, i.e. the best result among the members that reached ``max_steps`` in a run;
the IQR is the sensitivity figure (spread across seeds). The curve plotted per task is, at
each multiple s of ``steps_per_trial``, the best fitness of any result reported at step s in
the run (the best member of the population at step s), median over seeds with the IQR
shaded. Writes ``quality.json``, ``quality.md`` and ``quality_<task>.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
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
        complete = study.trials([pbtune.TrialState.COMPLETE])
        points = [(t.end_step, float(t.fitness)) for t in complete if t.fitness is not None]
        return {
            "points": points,
            "steps_trained": sum(t.end_step - t.start_step for t in complete),
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
        parent = Path(restored.to_directory())
        step = json.loads((parent / RAY_STEP_FILE).read_text())["step"]
    while step < task.max_steps:
        end = min(step + task.steps_per_trial, task.max_steps)
        out = Path(tempfile.mkdtemp(prefix="quality-ray-"))
        trial = pbtune.Trial(
            id=key, number=key, member=key, generation=0, params=params, start_step=step,
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
        "member": tune.grid_search(list(range(task.population))),
    }
    for name in task.space:
        param_space[name] = tune.sample_from(
            lambda spec, name=name: initial[spec.config.member][name]
        )
    class Collect(tune.Callback):
        """Every result of every trial, as the driver receives it."""

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
    points = [(step, value) for step, value, _ in collect.results]
    steps_trained = sum(done for _, _, done in collect.results)
    best: tuple[float, dict[str, Any]] = (-float("inf"), {})
    for result in grid:
        if result.error is not None:
            raise RuntimeError(f"Ray trial failed: {result.error}")
        final = result.metrics
        if final["step"] >= task.max_steps and final[task.metric] > best[0]:
            best = (float(final[task.metric]), {n: result.config[n] for n in task.space})
    return {"points": points, "steps_trained": steps_trained, "exploits": None,
            "wall_s": wall, "best_params": best[1]}


# -- figures ------------------------------------------------------------------------------------
def final_fitness(points: list[tuple[int, float]], max_steps: int) -> float:
    """The best result among the members that reached ``max_steps``."""
    return max(v for s, v in points if s == max_steps)


def curve(points: list[tuple[int, float]], task: Task) -> list[float]:
    """Best result reported at each multiple of steps_per_trial (NaN where none)."""
    best: dict[int, float] = {}
    for step, value in points:
        best[step] = max(value, best.get(step, -float("inf")))
    grid = range(task.steps_per_trial, task.max_steps + 1, task.steps_per_trial)
    return [best.get(s, float("nan")) for s in grid]


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        by[run["task"]][run["method"]].append(run)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for task_name, methods in by.items():
        out[task_name] = {}
        for method, group in methods.items():
            finals = np.array([r["final"] for r in group])
            q25, q50, q75 = np.percentile(finals, [25, 50, 75])
            out[task_name][method] = {
                "seeds": len(group),
                "median": float(q50),
                "q25": float(q25),
                "q75": float(q75),
                "iqr": float(q75 - q25),
                "min": float(finals.min()),
                "max": float(finals.max()),
                "steps_trained_median": float(np.median([r["steps_trained"] for r in group])),
                "wall_s_median": float(np.median([r["wall_s"] for r in group])),
            }
    return out


def targets(summary: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """pbtune's median final fitness >= Ray's and > random search's, per task and strategy."""
    out: dict[str, dict[str, Any]] = {}
    for task_name, methods in summary.items():
        row: dict[str, Any] = {}
        for mine in ("tournament", "truncation"):
            if mine not in methods:
                continue
            m = methods[mine]["median"]
            if "ray" in methods:
                row[f"{mine} >= ray"] = bool(m >= methods["ray"]["median"])
            if "random" in methods:
                row[f"{mine} > random"] = bool(m > methods["random"]["median"])
        out[task_name] = row
    return out


def digits_for(task_name: str) -> int:
    return 6 if task_name == "toy" else 4 if task_name == "digits" else 2


def markdown(summary: Mapping[str, Any], checks: Mapping[str, Any], meta: Mapping[str, Any]
             ) -> str:
    lines = [
        "# Quality at equal compute",
        "",
        f"{meta['seeds']} seeds per (task, method), {WORKERS} workers; final fitness = the best "
        "member at max_steps in a run; median and interquartile range (q25-q75, IQR) over seeds.",
        "",
        "| task | method | median final | q25 | q75 | IQR | min | max | steps trained "
        "| wall s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task_name, methods in summary.items():
        nd = digits_for(task_name)
        for method in METHODS:
            if method not in methods:
                continue
            s = methods[method]
            lines.append(
                f"| {task_name} | {method} | {s['median']:.{nd}f} | {s['q25']:.{nd}f} | "
                f"{s['q75']:.{nd}f} | {s['iqr']:.{nd}f} | {s['min']:.{nd}f} | "
                f"{s['max']:.{nd}f} | {s['steps_trained_median']:.0f} | "
                f"{s['wall_s_median']:.1f} |"
            )
    lines += ["", "Targets (median final fitness):", ""]
    for task_name, row in checks.items():
        shown = ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in row.items())
        lines.append(f"- {task_name}: {shown}")
    lines += [
        "",
        f"Machine: {meta['machine']}; Python {meta['python']}; pbtune {meta['pbtune']}; "
        f"ray {meta.get('ray')}; total {meta['total_s']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], task: Task, out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    steps = np.arange(task.steps_per_trial, task.max_steps + 1, task.steps_per_trial)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method in METHODS:
        curves = np.array([r["curve"] for r in runs
                           if r["task"] == task.name and r["method"] == method])
        if not len(curves):
            continue
        q25, q50, q75 = np.nanpercentile(curves, [25, 50, 75], axis=0)
        (line,) = ax.plot(steps, q50, label=f"{method} (n={len(curves)})")
        ax.fill_between(steps, q25, q75, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("training step (per member)")
    ax.set_ylabel(f"best {task.metric} in the population")
    ax.set_title(task.title, fontsize=9)
    if task.name == "toy":
        ax.set_ylim(0.9, 1.205)
    elif task.name == "digits":
        ax.set_ylim(0.5, 1.0)
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
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default: 5)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated, from: %(default)s")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="output directory (default: benchmarks/results)")
    args = parser.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.methods = [m for m in args.methods.split(",") if m]
    for t in args.tasks:
        if t not in TASKS:
            parser.error(f"unknown task {t!r}")
    for m in args.methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}")
    return args


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
        "ray": ray_version,
        "seeds": args.seeds,
        "workers": WORKERS,
        "tasks": {
            t: {"population": TASKS[t].population, "steps_per_trial": TASKS[t].steps_per_trial,
                "max_steps": TASKS[t].max_steps, "metric": TASKS[t].metric,
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
                    final = final_fitness(result["points"], task.max_steps)
                    run = {"task": task_name, "method": method, "seed": seed, "final": final,
                           "curve": curve(result["points"], task),
                           **{k: v for k, v in result.items() if k != "points"}}
                    runs.append(run)
                    nd = digits_for(task_name)
                    print(f"{task_name:9s} seed {seed} {method:10s} final {final:.{nd}f}  "
                          f"steps {result['steps_trained']:5d}  {result['wall_s']:6.1f} s  "
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
