"""Quality benchmark: how good a model each method finds with the same compute.

    python benchmarks/quality.py                  # every task and method, the tasks' seeds
    python benchmarks/quality.py --tasks toy --seeds 2 --methods tournament,ray

Tasks (benchmarks/tasks.py): ``toy`` (Jaderberg et al.'s toy quadratic), ``triangle`` (Ray
Tune's pbt_function.py toy), ``digits`` (the NumPy MLP of examples/digits_mlp.py), ``torch``
(a small PyTorch conv net on the same digits; only when torch is installed, the optional
``torch`` extra), ``deceptive`` (a toy on which the greedy schedule is the wrong one) and
``rl`` (a NumPy PPO agent on gymnasium's Pendulum-v1, benchmarks/ppo.py). Seeds 0..N-1, N
the task's own (10 on toy, triangle and deceptive, 5 on digits, torch and rl) unless
``--seeds`` sets it for every task.

Methods, all with the task's population size, ``steps_per_trial``, ``max_steps``, search
space and the same 2 workers; for one seed, all start from the same initial population (the
params pbtune draws for that seed) and the same initial model:

- ``tournament``: pbtune, ``Tournament()`` exploit (its default), ``Perturb()`` explore.
- ``truncation``: pbtune, ``Truncation(fraction=0.25)``, ``Perturb()``.
- ``multirate``: pbtune, ``MultiRate()`` (sub-populations selecting every 1, 2, 4 and 8
  segments; the less greedy exploit), ``Perturb()``.
- ``tournament-pb2``, ``truncation-pb2``: the same exploits with ``explore=pbtune.PB2()``
  (Parker-Holder et al.'s GP-bandit explore), with its defaults.
- ``random``: random search, run by pbtune with an exploit strategy that never copies
  (tasks.NoExploit): every initial member trains its initial params for the whole budget.
- ``ray``: Ray Tune ``PopulationBasedTraining`` (asynchronous, its defaults:
  ``quantile_fraction=0.25``, ``resample_probability=0.25``, ``perturbation_factors=(1.2,
  0.8)``, no clipping to bounds).
- ``ray-pb2``: Ray Tune's ``PB2`` (``ray.tune.schedulers.pb2.PB2``, the installed ray's),
  ``hyperparam_bounds`` = the pbtune space's bounds, the same ``perturbation_interval`` and
  ``quantile_fraction=0.25``.

Both Ray methods run through ``tune.Tuner`` with one function trainable that checkpoints
with ``tune.report(metrics, checkpoint=...)``, ``reuse_actors=True`` (_quality_ray.py). One
Ray iteration is one call of the task's training function, i.e. one block of
``steps_per_trial`` steps (a pbtune trial); ``time_attr`` is the step count,
``perturbation_interval = steps_per_trial`` steps, and trials stop at ``max_steps`` steps.
Every report also carries ``steps_done``, the steps that iteration trained (its end step
minus the step of the checkpoint it started from). Each iteration gets a trial number of its
own (as every pbtune trial has), which the noisy tasks seed their randomness with, and reads
a restored checkpoint from a private copy. How params appear in Ray's config: Floats as
themselves (``tune.uniform`` / ``tune.loguniform``), except that ``ray-pb2`` sees a log Float
as its log10 (its GP is linear in what it sees); an Int or an ordered Choice (the ``rl``
task's minibatch size) as a real number over [low, high + 1) or over [0, n) (the index), which
the trainable rounds down and clamps, the same for both Ray methods (_quality_ray.py says
more).

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

The targets use this figure, the median over seeds, per task (_quality_report.py):
Tournament's and Truncation's (with Perturb) >= Ray Tune PBT's and > random search's; the
better pbtune PB2 method >= Ray Tune PB2; each pbtune PB2 method no worse than the same
exploit with Perturb beyond noise; on ``deceptive`` and ``rl``, the best pbtune method above
Ray Tune PBT and above random search by more than noise; the best pbtune method no worse
than the better Ray method beyond noise. Noise, for two methods, is their pooled IQR:
sqrt((IQR_a^2 + IQR_b^2) / 2). Each is printed as met or NOT met, with the numbers. For
reference the table also gives the **final fitness at max_steps** (compute not equal): the
best result at step ``max_steps`` in the run, however many steps were trained to get there,
and the steps trained in total (also as a multiple of B).

Figures per (task, method), over seeds: the median, quartiles (q25, q75), interquartile range
(IQR = q75 - q25, the sensitivity to the seed), min and max, and every seed's value. Per run
the JSON keeps ``trace``, the list of (cumulative steps, step, fitness) of every result in
report order, so any curve can be redrawn. ``quality_<task>.png``: the best fitness reported
so far against the cumulative steps trained, median over seeds with the IQR shaded, drawn
only where every seed of that method has a result (from each method's latest first result to
its earliest end), and a vertical line at B. Writes ``quality.json``, ``quality.md`` and
``quality_<task>.png`` into ``--out``.

The PB2 methods need a pbtune with ``pbtune.PB2``; with an older one they are skipped, with
a message, as the Ray methods are when ray is not installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import tasks  # noqa: E402
from _quality_ray import RAY_METHODS, run_ray  # noqa: E402
from _quality_report import (  # noqa: E402
    DEFINITION,
    METHODS,
    best_at_budget,
    budget,
    cumulative,
    digits_for,
    final_fitness,
    markdown,
    plot,
    summarise,
    targets,
)
from tasks import TASKS, Task  # noqa: E402

import pbtune  # noqa: E402

WORKERS = 2
RESULTS = HERE / "results"
PB2_METHODS = ("tournament-pb2", "truncation-pb2")


# -- pbtune -------------------------------------------------------------------------------------
def pbtune_exploit(method: str) -> pbtune.ExploitStrategy:
    exploit = method.removesuffix("-pb2")
    if exploit == "tournament":
        return pbtune.Tournament()
    if exploit == "truncation":
        return pbtune.Truncation(fraction=0.25)
    if exploit == "multirate":
        return pbtune.MultiRate()
    if exploit == "random":
        return tasks.NoExploit()
    raise ValueError(method)


def pbtune_explore(method: str) -> pbtune.ExploreStrategy:
    return pbtune.PB2() if method in PB2_METHODS else pbtune.Perturb()


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
        explore=pbtune_explore(method),
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
        return {
            "done": [(t.end_step - t.start_step, t.end_step, float(t.metrics[task.metric]))
                     for t in complete],
            "exploits": sum(1 for t in complete if t.decision == "exploit"),
            "wall_s": wall,
            "best_params": dict(study.best_trial.params),
        }


# -- one run of any method ----------------------------------------------------------------------
def run_method(task: Task, method: str, seed: int, ray_root: Path) -> dict[str, Any]:
    """One run: its trace, steps trained, best at B and final fitness (and what the runner
    reported). Ray methods need ``start_ray()`` first; their storage goes under
    ``ray_root``."""
    if method in RAY_METHODS:
        result = run_ray(task, RAY_METHODS[method], seed, initial_population(task, seed),
                         ray_root)
    else:
        result = run_pbtune(task, method, seed)
    done = result.pop("done")
    trace = cumulative(done)
    return {"task": task.name, "method": method, "seed": seed,
            "equal": best_at_budget(trace, budget(task)),
            "final": final_fitness(trace, task.max_steps),
            "trace": trace, "steps_trained": sum(n for n, _, _ in done), **result}


def describe(run: dict[str, Any], task: Task, began: float) -> str:
    nd = digits_for(task.name)
    return (f"{task.name:9s} seed {run['seed']} {run['method']:14s} at B {run['equal']:.{nd}f}  "
            f"final {run['final']:.{nd}f}  steps {run['steps_trained']:5d} "
            f"(B {budget(task)})  {run['wall_s']:6.1f} s  [{time.perf_counter() - began:6.0f} s]")


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Quality at equal compute: pbtune (Perturb "
                                     "and PB2 explore) vs Ray Tune PBT and PB2 vs random "
                                     "search.")
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help="comma-separated, from: %(default)s")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds 0..N-1 on every task (default: the task's own, 10 on toy, "
                        "triangle and deceptive, 5 on digits, torch and rl)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated, from: %(default)s")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="output directory (default: benchmarks/results)")
    args = parser.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.methods = [m for m in args.methods.split(",") if m]
    check_names(parser, args.tasks, args.methods)
    return args


def check_names(parser: argparse.ArgumentParser, task_names: list[str], methods: list[str]
                ) -> None:
    for t in task_names:
        if t == "torch" and t not in TASKS:
            parser.error("task 'torch' needs torch: pip install -e '.[torch]'")
        if t not in TASKS:
            parser.error(f"unknown task {t!r}")
    for m in methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}")


def available(methods: list[str]) -> tuple[list[str], str | None]:
    """The methods this environment can run, and Ray's version if a Ray method needs it
    (then Ray is started); says which were skipped and why."""
    if not hasattr(pbtune, "PB2"):
        skipped = [m for m in methods if m in PB2_METHODS]
        if skipped:
            print(f"this pbtune ({Path(pbtune.__file__).parent}) has no PB2: skipping "
                  f"{', '.join(skipped)}")
            methods = [m for m in methods if m not in PB2_METHODS]
    ray_version = None
    if any(m in RAY_METHODS for m in methods):
        try:
            ray_version = start_ray()
        except ImportError:
            print("ray is not installed (pip install -e '.[bench]'): skipping the Ray methods")
            methods = [m for m in methods if m not in RAY_METHODS]
    return methods, ray_version


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


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def start_ray() -> str | None:
    import ray

    # Ray's worker processes import the trainable's module, tasks.py and the examples by name.
    paths = [str(HERE), str(tasks.EXAMPLES)]
    os.environ["PYTHONPATH"] = os.pathsep.join(
        paths + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    return str(ray.__version__)


def environment(task_names: list[str], methods: list[str], ray_version: str | None
                ) -> dict[str, Any]:
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "pbtune": pbtune.__version__,
        "pbtune_path": str(Path(pbtune.__file__).resolve().parent),
        "checkout": checkout(),
        "ray": ray_version,
        "gymnasium": version("gymnasium") if "rl" in task_names else None,
        "torch": version("torch") if "torch" in task_names else None,
        "methods": methods,
        "workers": WORKERS,
        "definition": DEFINITION,
    }


def task_meta(task: Task, seeds: int) -> dict[str, Any]:
    return {"population": task.population, "steps_per_trial": task.steps_per_trial,
            "max_steps": task.max_steps, "budget": budget(task), "metric": task.metric,
            "seeds": seeds, "space": {n: repr(p) for n, p in task.space.items()}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    methods, ray_version = available(args.methods)
    seeds = {t: args.seeds or TASKS[t].seeds for t in args.tasks}
    meta = environment(args.tasks, methods, ray_version)
    meta["tasks"] = {t: task_meta(TASKS[t], seeds[t]) for t in args.tasks}
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="quality-ray-storage-") as ray_root:
        for task_name in args.tasks:
            task = TASKS[task_name]
            for seed in range(seeds[task_name]):
                for method in methods:
                    runs.append(run_method(task, method, seed, Path(ray_root)))
                    print(describe(runs[-1], task, began), flush=True)
    summary = summarise(runs)
    checks = targets(summary)
    meta["total_s"] = time.perf_counter() - began
    data = {"meta": meta, "summary": summary,
            "targets": {t: [c.to_dict() for c in rows] for t, rows in checks.items()},
            "runs": runs}
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
