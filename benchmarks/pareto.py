"""Pareto benchmark: two objectives, Pareto selection against a weighted sum and random search.

    python benchmarks/pareto.py                          # both tasks, 10 seeds, ~5 min here
    python benchmarks/pareto.py --tasks fuel --seeds 2 --out /tmp/pareto-check

Tasks (_pareto_tasks.py): ``width`` (the digits MLP: validation accuracy against log2 of
its active hidden units) and ``fuel`` (the deceptive toy: Q against the fuel its speed
costs). Methods, each with the task's population, ``steps_per_trial``, ``max_steps``,
space, 2 worker threads on an in-memory study, and for one seed the same initial
population (pbtune draws it from the seed and the space alone):

- ``pareto``: ``create_study(objectives=...)``: exploit (pbtune's default ``Tournament``)
  compares trials by Pareto dominance, ties broken by crowding distance.
- ``weighted``: ``create_study(fitness=<the task's weighted sum>, mode="max")``, the same
  Tournament: equal weights on the two objectives, each scaled to [0, 1] by its range
  (what one writes with no preference between them; MO-PBT, Dushatskiy et al., ICML
  2023, compares its Pareto selection with such scalarised single-objective PBT).
- ``random``: random search: the same machinery with an exploit that never copies
  (tasks.NoExploit, as in quality.py): each initial member trains its params to the end.

Per run: the **final front**, the non-dominated set of the members' final trials (each
member's latest COMPLETE trial), computed for every method by the same function
(``pbtune.strategies.Criteria(...).front``; for ``pareto`` it is checked to equal
``study.best_trials``), and its **hypervolume** (``pbtune.hypervolume``) against the task's
fixed reference point, the same for every method and seed: width (accuracy 0.1, chance
level; log2 units 6, the widest net), fuel (Q -0.42, where every member starts; fuel 1.5,
the most a schedule can burn). A point adds to the HV only where it is better than the
reference in both objectives.
**HV at B**: the same, on the population as it stood when the run had trained B =
population x max_steps steps (COMPLETE trials in the order they finished, each member's
latest among those within B): equal compute, since PBT's copies train some steps again.

Reported per (task, method), over seeds: median, quartiles, IQR, min and max of the HV
and of the HV at B, the front's size and the steps trained; the ratios of medians pareto /
weighted and pareto / random, and per seed (same seed, same initial population) the
paired ratio and how many seeds pareto wins. For ``fuel`` the report adds the HV of two
reference fronts computed with the noise off: every fixed h, and every fixed h together
with target-following schedules. Writes ``pareto.json`` (every run's front and final
population), ``pareto.md`` and ``pareto.png`` (every seed's final front) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _common  # noqa: E402
import quality  # noqa: E402
import tasks  # noqa: E402
from _pareto_tasks import TASKS, ParetoTask, fuel_reference_fronts  # noqa: E402
from _quality_report import stats  # noqa: E402

import pbtune  # noqa: E402
from pbtune.strategies import Criteria  # noqa: E402
from pbtune.trial import FrozenTrial  # noqa: E402

METHODS = ("pareto", "weighted", "random")
WORKERS = 2


# -- one run ------------------------------------------------------------------------------------
def criteria(task: ParetoTask) -> Criteria:
    return Criteria(tuple(task.objectives.items()))  # type: ignore[arg-type]


def turned(task: ParetoTask, metrics: Mapping[str, float]) -> tuple[float, ...]:
    """Objective values turned so that higher is better (as `Criteria.values` does)."""
    return tuple(metrics[n] if mode == "max" else -metrics[n]
                 for n, mode in task.objectives.items())


def make_study(task: ParetoTask, method: str, seed: int, root: Path) -> pbtune.Study:
    settings: dict[str, Any] = {"objectives": dict(task.objectives)}
    if method == "weighted":
        settings = {"fitness": task.weighted, "mode": "max"}
    elif method == "random":
        settings["exploit"] = tasks.NoExploit()
    return pbtune.create_study(
        f"pareto-{task.name}-{method}-{seed}", storage=None, space=dict(task.space),
        population_size=task.population, steps_per_trial=task.steps_per_trial,
        max_steps=task.max_steps, checkpoint_root=root, seed=seed, **settings)


def latest_per_member(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Each member's latest trial (the largest id) among ``trials``."""
    latest: dict[int, FrozenTrial] = {}
    for t in trials:
        if t.member not in latest or t.id > latest[t.member].id:
            latest[t.member] = t
    return [latest[m] for m in sorted(latest)]


def front_and_hv(task: ParetoTask, population: Sequence[FrozenTrial]
                 ) -> tuple[list[FrozenTrial], float]:
    front = criteria(task).front(population)
    hv = pbtune.hypervolume([turned(task, t.metrics or {}) for t in front],
                            turned(task, task.reference))
    return front, hv


def within_budget(task: ParetoTask, complete: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The COMPLETE trials, in the order they finished, up to B steps trained in all."""
    limit, total, kept = task.population * task.max_steps, 0, []
    for t in sorted(complete, key=lambda t: (t.finished_at or 0.0, t.id)):
        total += t.end_step - t.start_step
        if total > limit:
            break
        kept.append(t)
    return kept


def run_one(task: ParetoTask, method: str, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pareto-") as scratch:
        study = make_study(task, method, seed, Path(scratch))
        started = time.perf_counter()
        study.optimize(task.train, workers=WORKERS, backend="thread", show_progress=False)
        wall = time.perf_counter() - started
        complete = study.trials([pbtune.TrialState.COMPLETE])
        population = latest_per_member(complete)
        front, hv = front_and_hv(task, population)
        if method == "pareto" and [t.id for t in front] != [t.id for t in study.best_trials]:
            raise RuntimeError(f"{task.name} seed {seed}: the front differs from best_trials")
        _, hv_at_budget = front_and_hv(task, latest_per_member(within_budget(task, complete)))
    names = list(task.objectives)
    return {
        "task": task.name, "method": method, "seed": seed, "hv": hv,
        "hv_at_budget": hv_at_budget, "front_size": len(front),
        "front_best": max((t.metrics or {})[names[0]] for t in front),
        "front_cheapest": min((t.metrics or {})[names[1]] for t in front),
        "front": sorted([t.metrics[n] for n in names] for t in front if t.metrics),
        "population": [{"member": t.member, "params": t.params,
                        **{n: (t.metrics or {})[n] for n in names}} for t in population],
        "steps_trained": sum(t.end_step - t.start_step for t in complete),
        "exploits": sum(t.decision == "exploit" for t in complete), "wall_s": wall,
    }


# -- over seeds ---------------------------------------------------------------------------------
def summarise(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["task"] for r in runs):
        out[name] = {}
        for method in METHODS:
            group = sorted((r for r in runs if r["task"] == name and r["method"] == method),
                           key=lambda r: r["seed"])
            if group:
                out[name][method] = {
                    "seeds": [r["seed"] for r in group],
                    **{key: stats([r[key] for r in group]) for key in
                       ("hv", "hv_at_budget", "front_size", "front_best",
                        "front_cheapest", "steps_trained")},
                    "wall_s_median": stats([r["wall_s"] for r in group])["median"],
                }
        out[name]["ratios"] = ratios(out[name])
    return out


def ratios(methods: Mapping[str, Any]) -> dict[str, Any]:
    """pareto / other: of the medians, and per seed (paired), for HV and HV at B."""
    found: dict[str, Any] = {}
    if "pareto" not in methods:
        return found
    mine = methods["pareto"]
    for other in ("weighted", "random"):
        if other not in methods:
            continue
        theirs = methods[other]
        for key in ("hv", "hv_at_budget"):
            pairs = [(a, b) for s, a in zip(mine["seeds"], mine[key]["per_seed"], strict=True)
                     for t, b in zip(theirs["seeds"], theirs[key]["per_seed"], strict=True)
                     if s == t]
            found[f"{other}_{key}"] = {
                "of_medians": mine[key]["median"] / theirs[key]["median"],
                "paired": stats([a / b for a, b in pairs]),
                "wins": sum(a > b for a, b in pairs), "seeds": len(pairs),
            }
    return found


def reference_hvs(task: ParetoTask) -> dict[str, float]:
    """For ``fuel``: the HV of noise-free reference fronts against the same reference point:
    every fixed h (the best random search could find), and every fixed h together with
    the target-following schedules."""
    if task.name != "fuel":
        return {}
    ref = turned(task, task.reference)
    families = fuel_reference_fronts()

    def hv(points: Sequence[tuple[float, float]]) -> float:
        return pbtune.hypervolume([(q, -fuel) for q, fuel in points], ref)

    return {"fixed h": hv(families["fixed h"]),
            "fixed h and target + shift": hv(families["fixed h"] + families["target + shift"])}


# -- report -------------------------------------------------------------------------------------
def fmt(s: Mapping[str, Any], nd: int = 4) -> str:
    return (f"**{s['median']:.{nd}f}** | {s['q25']:.{nd}f}-{s['q75']:.{nd}f} | "
            f"{s['iqr']:.{nd}f} | {s['min']:.{nd}f} | {s['max']:.{nd}f}")


def ratio_lines(name: str, found: Mapping[str, Any]) -> list[str]:
    lines = []
    for key, label in (("hv", "HV"), ("hv_at_budget", "HV at B")):
        for other in ("weighted", "random"):
            r = found.get(f"{other}_{key}")
            if r is None:
                continue
            p = r["paired"]
            lines.append(
                f"- {name}, {label}: pareto / {other} = **{r['of_medians']:.3f}** (ratio of "
                f"medians); per seed {p['median']:.3f} median, {p['min']:.3f} to "
                f"{p['max']:.3f}; pareto higher in {r['wins']} of {r['seeds']} seeds")
    return lines


def task_rows(task: ParetoTask, methods: Mapping[str, Any], meta: Mapping[str, Any]
              ) -> list[str]:
    b = task.population * task.max_steps
    rows = []
    for method in METHODS:
        if method not in methods:
            continue
        s = methods[method]
        steps = s["steps_trained"]["median"]
        rows.append(f"| {task.name} | {method} | {fmt(s['hv'])} | "
                    f"{s['hv_at_budget']['median']:.4f} ({s['hv_at_budget']['iqr']:.4f}) | "
                    f"{s['front_size']['median']:.1f} | {s['front_best']['median']:.3f} / "
                    f"{s['front_cheapest']['median']:.2f} | {steps:.0f} ({steps / b:.2f}) | "
                    f"{s['wall_s_median']:.1f} |")
    return rows


def markdown(summary: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    lines = [
        "# Two objectives: Pareto selection, weighted sum, random search",
        "",
        "Per task: population, steps, space and initial population the same for every "
        f"method; {meta['workers']} worker threads; seeds "
        f"{', '.join(f'{t} {n}' for t, n in meta['seeds'].items())}. HV: hypervolume of "
        "the non-dominated set of the members' final trials against the task's fixed "
        "reference point (below); *HV at B*: the same when the run had trained B = "
        "population x max_steps steps (median (IQR)). *Front's best / cheapest*: the front's "
        "best value of the first objective and lowest of the second (medians). Median "
        "**bold**, q25-q75, IQR, min, max over seeds.",
        "",
        "| task | method | **HV median** | q25-q75 | IQR | min | max | HV at B | "
        "front size | front's best / cheapest | steps trained (x B) | wall s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, methods in summary.items():
        lines += task_rows(TASKS[name], methods, meta)
    lines += ["", "Ratios (pareto / other):", ""]
    for name, methods in summary.items():
        lines += ratio_lines(name, methods["ratios"])
    lines += ["", "Tasks, reference points and the weighted method's fitness:", ""]
    for name in summary:
        t = meta["tasks"][name]
        lines.append(f"- {name}: {t['title']}; population {t['population']}, "
                     f"{t['max_steps']} steps, {t['steps_per_trial']} per trial; reference "
                     f"{t['reference_point']}; weighted: `{t['weights']}`")
        for label, hv in t.get("reference_hv", {}).items():
            lines.append(f"  - noise-free reference front, {label}: HV {hv:.4f}")
    lines += ["", "Per seed, HV (seeds in order):", ""]
    for name, methods in summary.items():
        for method in METHODS:
            if method in methods:
                values = " ".join(f"{v:.4f}" for v in methods[method]["hv"]["per_seed"])
                lines.append(f"- {name} {method}: {values}")
    env = meta["environment"]
    lines += ["", "`pareto.png`: every seed's final front, one colour per method.", "",
              f"{_common.env_line(env)} {env['platform']}; src/ modified: "
              f"{meta['checkout']['src_modified']}; total {meta['total_s']:.0f} s.", ""]
    return "\n".join(lines)


def plot(runs: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], out: Path) -> None:
    plt = _common.pyplot()
    names = list(summary)
    fig, axes = plt.subplots(1, len(names), figsize=(6.2 * len(names), 4.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        task = TASKS[name]
        best, cost = list(task.objectives)
        for colour, method in zip(("C0", "C1", "C2"), METHODS, strict=True):
            for i, run in enumerate(r for r in runs if r["task"] == name
                                    and r["method"] == method):
                pts = sorted(run["front"], key=lambda p: p[1])
                ax.step([p[1] for p in pts], [p[0] for p in pts], where="post", color=colour,
                        alpha=0.45, marker=".", markersize=4,
                        label=method if i == 0 else None)
        if name == "fuel":
            for (label, pts), style in zip(fuel_reference_fronts().items(), (":", "--"),
                                           strict=True):
                ax.plot([p[1] for p in pts], [p[0] for p in pts], style, color="black",
                        linewidth=1, label=f"noise-free: {label}")
            ax.set_ylim(0.0, 1.2)
        if name == "width":
            ax.set_xticks(range(7), [str(2**k) for k in range(7)])
        ax.set_xlabel(f"{cost} (min)" + ("  [tick labels: hidden units]" if name == "width"
                                          else ""))
        ax.set_ylabel(f"{best} (max)")
        ax.set_title(task.title, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=110)
    plt.close(fig)


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Two objectives: Pareto selection vs a "
                                     "weighted sum vs random search, by hypervolume.")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated, from: "
                        "%(default)s")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds 0..N-1 on every task (default: the task's own, 10)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated, from: %(default)s")
    parser.add_argument("--out", type=Path, default=quality.RESULTS,
                        help="output directory (default: benchmarks/results)")
    args = parser.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.methods = [m for m in args.methods.split(",") if m]
    for t in args.tasks:
        if t not in TASKS:
            parser.error(f"unknown task {t!r}; choose from {', '.join(TASKS)}")
    for m in args.methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    return args


def task_meta(task: ParetoTask, seeds: int) -> dict[str, Any]:
    return {"title": task.title, "population": task.population,
            "steps_per_trial": task.steps_per_trial, "max_steps": task.max_steps,
            "objectives": dict(task.objectives),
            "weights": task.weights, "seeds": seeds,
            "reference_point": {n: round(v, 6) for n, v in task.reference.items()},
            "space": {n: repr(p) for n, p in task.space.items()},
            "reference_hv": reference_hvs(task)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("pbtune").setLevel(logging.WARNING)  # a line per trial otherwise
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    seeds = {t: args.seeds or TASKS[t].seeds for t in args.tasks}
    meta: dict[str, Any] = {
        "environment": _common.environment(), "checkout": quality.checkout(),
        "pbtune_path": str(Path(pbtune.__file__).resolve().parent), "workers": WORKERS,
        "methods": args.methods, "seeds": seeds,
        "tasks": {t: task_meta(TASKS[t], seeds[t]) for t in args.tasks}}
    runs: list[dict[str, Any]] = []
    for name in args.tasks:
        task = TASKS[name]
        for seed in range(seeds[name]):
            for method in args.methods:
                runs.append(run_one(task, method, seed))
                r = runs[-1]
                print(f"{name:6s} seed {seed} {method:9s} HV {r['hv']:.4f} (at B "
                      f"{r['hv_at_budget']:.4f})  front {r['front_size']:2d}  steps "
                      f"{r['steps_trained']:5d} (B {task.population * task.max_steps})  "
                      f"{r['wall_s']:5.1f} s  [{time.perf_counter() - began:4.0f} s]",
                      flush=True)
    summary = summarise(runs)
    meta["total_s"] = time.perf_counter() - began
    data = {"meta": meta, "summary": summary, "runs": runs}
    (args.out / "pareto.json").write_text(json.dumps(data, indent=1) + "\n")
    table = markdown(summary, meta)
    (args.out / "pareto.md").write_text(table)
    plot(runs, summary, args.out)
    print()
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
