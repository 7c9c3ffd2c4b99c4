"""Early stop benchmark: does ``early_stop=pbtune.Lagging(generations=3)`` free compute?

    python benchmarks/early_stop.py                      # 20 seeds, 4 methods: ~6 min here
    python benchmarks/early_stop.py --seeds 2 --out /tmp/early-stop-check

The task is tasks.py's triangle (Ray Tune's pbt_function.py toy: accuracy grows only while
the lr is within 3x of an optimal lr that rises from 0.001 to 0.01 as accuracy reaches 100
and falls back after) with its lr range widened to log-uniform [1e-4, 0.2] and a
population of 16 (300 steps, 5 per trial, as in quality.py). An lr above 0.03 is more than
3x even the largest optimal lr: such a member never leaves accuracy 0 (it is clamped
there), whatever it trains. A quarter of the range lies above 0.03 (log10(0.2 / 0.03) /
log10(0.2 / 1e-4) = 0.25), so about a quarter of the initial population is hopeless and
needs a copy to be of any use.

Methods, each with and without ``early_stop=pbtune.Lagging(generations=3)`` (a member whose
result ranks in the bottom quarter 3 times in a row restarts from a copy of a top-quarter
member with explored params, keeping its budget), ``Perturb()`` explore, 2 worker threads
on an in-memory study, and for one seed the same initial population:

- ``multirate``: ``pbtune.MultiRate()``, the slow selection: sub-populations that select
  every 1, 2, 4 and 8 segments and copy only from their own or slower sub-populations, so
  a hopeless member of a slow sub-population waits up to 8 segments, and a sub-population
  whose members are all hopeless has nobody to copy.
- ``tournament``: ``pbtune.Tournament()`` (pbtune's default), for comparison: a hopeless
  member loses its first tournament against anyone above 0 and copies at once.

Figures per run, as quality.py defines them (_quality_report): **best at B**, the best
accuracy of any result while the run had trained at most B = 16 x 300 steps (results in
the order they finished; equal compute), and **final**, the best accuracy at step 300;
*restarts*, the run's trials whose ``decision`` is ``"restart"``; *steps trained*, all the
steps its trials trained (copies from a member that is behind train steps again, and a
restart from one that is ahead skips some); *hopeless steps*, the steps trained with lr >
0.03; and whom the restarts hit: how many followed a trial at such an lr, and (MultiRate)
how many by the selection interval of the member's sub-population. Over seeds: median,
quartiles, IQR, min, max; and per seed the difference with Lagging minus without (same
seed, same initial population). Writes ``early_stop.json``
(every run with its trace), ``early_stop.md`` and ``early_stop.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _common  # noqa: E402
import quality  # noqa: E402
from _quality_report import (  # noqa: E402
    best_at_budget,
    best_so_far,
    budget,
    cumulative,
    final_fitness,
    stats,
)
from tasks import TASKS, TRIANGLE_Q_TOLERANCE, Task  # noqa: E402

import pbtune  # noqa: E402

LR_RANGE = (1e-4, 0.2)
HOPELESS_LR = TRIANGLE_Q_TOLERANCE * 0.01  # 3x the largest optimal lr of the triangle
TASK: Task = dataclasses.replace(
    TASKS["triangle"], population=16, seeds=20,
    space={"lr": pbtune.Float(*LR_RANGE, log=True)},
    title=f"Triangle lr toy, lr log-uniform on {list(LR_RANGE)}, population 16: accuracy "
    "after 300 steps")
EXPLOITS = ("multirate", "tournament")
METHODS = tuple(f"{e}{suffix}" for e in EXPLOITS for suffix in ("", "-lagging"))
WORKERS = 2


def make_study(method: str, seed: int, root: Path) -> pbtune.Study:
    exploit = pbtune.MultiRate() if method.startswith("multirate") else pbtune.Tournament()
    early = pbtune.Lagging(generations=3) if method.endswith("-lagging") else None
    return pbtune.create_study(
        f"early-stop-{method}-{seed}", storage=None, space=dict(TASK.space),
        metric=TASK.metric, mode="max", population_size=TASK.population,
        steps_per_trial=TASK.steps_per_trial, max_steps=TASK.max_steps, exploit=exploit,
        explore=pbtune.Perturb(), early_stop=early, checkpoint_root=root, seed=seed)


def run_one(method: str, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="early-stop-") as scratch:
        study = make_study(method, seed, Path(scratch))
        started = time.perf_counter()
        study.optimize(TASK.train, workers=WORKERS, backend="thread", show_progress=False)
        wall = time.perf_counter() - started
        every = study.trials()
    complete = sorted((t for t in every if t.state == pbtune.TrialState.COMPLETE),
                      key=lambda t: (t.finished_at or 0.0, t.id))
    trace = cumulative([(t.end_step - t.start_step, t.end_step, float(t.fitness or 0.0))
                        for t in complete])
    return {
        **restart_causes(method, every),
        "method": method, "seed": seed,
        "equal": best_at_budget(trace, budget(TASK)),
        "final": final_fitness(trace, TASK.max_steps),
        "restarts": sum(t.decision == "restart" for t in every),
        "exploits": sum(t.decision == "exploit" for t in every),
        "steps_trained": sum(t.end_step - t.start_step for t in complete),
        "hopeless_initial": sum(t.decision == "initial" and t.params["lr"] > HOPELESS_LR
                                for t in every),
        "hopeless_steps": sum(t.end_step - t.start_step for t in complete
                              if t.params["lr"] > HOPELESS_LR),
        "trace": trace, "wall_s": wall,
    }


def restart_causes(method: str, every: Sequence[pbtune.FrozenTrial]) -> dict[str, Any]:
    """Whom the restarts hit: how many followed a trial at a hopeless lr, and (MultiRate)
    how many by the selection interval of the member's sub-population."""
    previous: dict[int, pbtune.FrozenTrial] = {}
    after_hopeless, by_interval = 0, {str(i): 0 for i in pbtune.MultiRate().intervals}
    for t in sorted(every, key=lambda t: t.id):
        if t.decision == "restart":
            after_hopeless += previous[t.member].params["lr"] > HOPELESS_LR
            by_interval[str(pbtune.MultiRate().interval(t.member))] += 1
        previous[t.member] = t
    return {"restarts_after_hopeless": after_hopeless,
            "restarts_by_interval": by_interval if method.startswith("multirate") else None}


# -- over seeds ---------------------------------------------------------------------------------
KEYS = ("equal", "final", "restarts", "restarts_after_hopeless", "steps_trained",
        "hopeless_steps", "hopeless_initial")


def summarise(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in METHODS:
        group = sorted((r for r in runs if r["method"] == method), key=lambda r: r["seed"])
        if group:
            out[method] = {"seeds": [r["seed"] for r in group],
                           **{k: stats([r[k] for r in group]) for k in KEYS},
                           "wall_s_median": stats([r["wall_s"] for r in group])["median"]}
    out["effect"] = {}
    for exploit in EXPLOITS:
        base = {r["seed"]: r for r in runs if r["method"] == exploit}
        lag = {r["seed"]: r for r in runs if r["method"] == f"{exploit}-lagging"}
        seeds = sorted(set(base) & set(lag))
        if seeds:
            out["effect"][exploit] = {
                key: {**stats([lag[s][key] - base[s][key] for s in seeds]),
                      "wins": sum(lag[s][key] > base[s][key] for s in seeds),
                      "losses": sum(lag[s][key] < base[s][key] for s in seeds)}
                for key in ("equal", "final")}
    return out


# -- report -------------------------------------------------------------------------------------
def row(method: str, s: Mapping[str, Any]) -> str:
    e, f, b = s["equal"], s["final"], budget(TASK)
    steps, restarts = s["steps_trained"], s["restarts"]
    return (f"| {method} | **{e['median']:.2f}** | {e['q25']:.2f}-{e['q75']:.2f} | "
            f"{e['iqr']:.2f} | {e['min']:.2f} | {e['max']:.2f} | {f['median']:.2f} "
            f"({f['iqr']:.2f}) | {restarts['median']:.0f} [{restarts['min']:.0f}-"
            f"{restarts['max']:.0f}] | {steps['median']:.0f} ({steps['median'] / b:.2f}) "
            f"[{steps['min']:.0f}-{steps['max']:.0f}] | {s['hopeless_steps']['median']:.0f} | "
            f"{s['wall_s_median']:.1f} |")


def restart_line(method: str, s: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]
                 ) -> str:
    total = sum(s["restarts"]["per_seed"])
    hopeless = sum(s["restarts_after_hopeless"]["per_seed"])
    share = 100 * hopeless / max(total, 1)
    line = (f"- {method}: {total:.0f} restarts, {hopeless:.0f} ({share:.0f}%) after a trial at "
            f"lr above {HOPELESS_LR:g}")
    if method.startswith("multirate"):
        counts: dict[str, int] = {}
        for r in runs:
            if r["method"] == method:
                for k, v in r["restarts_by_interval"].items():
                    counts[k] = counts.get(k, 0) + v
        line += "; by the sub-population's selection interval " + ", ".join(
            f"every {k}: {v}" for k, v in counts.items())
    return line


def markdown(summary: Mapping[str, Any], runs: Sequence[Mapping[str, Any]],
             meta: Mapping[str, Any]) -> str:
    b = budget(TASK)
    lines = [
        "# Early stop: Lagging(generations=3) at equal compute",
        "",
        f"{TASK.title}; {TASK.steps_per_trial} steps per trial; lr above {HOPELESS_LR:g} "
        f"(a quarter of the range) never leaves accuracy 0. {meta['seeds']} seeds; "
        f"{meta['workers']} worker threads. **Best at B**: the best accuracy of any result "
        f"within B = {TASK.population} x {TASK.max_steps} = {b} steps trained (results in "
        "the order they finished); *final*: the best at step 300 (median (IQR)); "
        "*restarts*: trials with decision restart (median [min-max]); *steps trained*: "
        "median (x B) [min-max]; *hopeless steps*: steps trained with lr above "
        f"{HOPELESS_LR:g} (median).",
        "",
        "| method | **best at B, median** | q25-q75 | IQR | min | max | final | restarts | "
        "steps trained | hopeless steps | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [row(m, summary[m]) for m in METHODS if m in summary]
    lines += ["", "With Lagging minus without, per seed (same initial population):", ""]
    for exploit, effect in summary["effect"].items():
        for key, label in (("equal", "best at B"), ("final", "final")):
            d = effect[key]
            lines.append(f"- {exploit}, {label}: median difference **{d['median']:+.2f}** "
                         f"(q25 {d['q25']:+.2f}, q75 {d['q75']:+.2f}, min {d['min']:+.2f}, "
                         f"max {d['max']:+.2f}); higher with Lagging in {d['wins']}, lower "
                         f"in {d['losses']} of {len(summary[exploit]['seeds'])} seeds")
    lines += ["", "Whom Lagging restarts (all seeds together):", ""]
    for method in METHODS:
        if method.endswith("-lagging") and method in summary:
            lines.append(restart_line(method, summary[method], runs))
    lines += ["", "Per seed, best at B (seeds in order); hopeless members at the start:", ""]
    for method in METHODS:
        if method in summary:
            s = summary[method]
            values = " ".join(f"{v:.2f}" for v in s["equal"]["per_seed"])
            lines.append(f"- {method}: {values}; restarts "
                         + " ".join(f"{v:.0f}" for v in s["restarts"]["per_seed"]))
    hopeless = summary[METHODS[0]]["hopeless_initial"]["per_seed"] if METHODS[0] in summary \
        else []
    lines.append("- hopeless at the start (of 16), per seed: "
                 + " ".join(f"{v:.0f}" for v in hopeless))
    env = meta["environment"]
    lines += ["", "`early_stop.png`: best accuracy reported so far against steps trained, "
              "median over seeds, IQR shaded; the dotted line is B.", "",
              f"{_common.env_line(env)} {env['platform']}; src/ modified: "
              f"{meta['checkout']['src_modified']}; total {meta['total_s']:.0f} s.", ""]
    return "\n".join(lines)


def plot(runs: Sequence[Mapping[str, Any]], out: Path) -> None:
    plt = _common.pyplot()
    grid = np.linspace(0, max(r["trace"][-1][0] for r in runs), 600)
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for method in METHODS:
        group = [r for r in runs if r["method"] == method]
        if not group:
            continue
        curves = np.array([best_so_far(r["trace"], grid) for r in group])
        q25, q50, q75 = np.percentile(curves, [25, 50, 75], axis=0)
        colour = f"C{EXPLOITS.index(method.removesuffix('-lagging'))}"
        style = "-" if method.endswith("-lagging") else "--"
        ax.plot(grid, q50, style, color=colour, label=f"{method} (n={len(group)})")
        ax.fill_between(grid, q25, q75, color=colour, alpha=0.12)
    ax.axvline(budget(TASK), color="black", linestyle=":", linewidth=1,
               label=f"B = {budget(TASK)}")
    ax.set_xlabel("steps trained, cumulative over the population (in the order finished)")
    ax.set_ylabel("best accuracy reported so far")
    ax.set_title(TASK.title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "early_stop.png", dpi=110)
    plt.close(fig)


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Best accuracy at equal compute with and "
                                     "without early_stop=Lagging(generations=3).")
    parser.add_argument("--seeds", type=int, default=TASK.seeds,
                        help="seeds 0..N-1 (default: %(default)s)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated, from: %(default)s")
    parser.add_argument("--out", type=Path, default=quality.RESULTS,
                        help="output directory (default: benchmarks/results)")
    args = parser.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    for m in args.methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("pbtune").setLevel(logging.WARNING)  # a line per trial otherwise
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    meta: dict[str, Any] = {
        "environment": _common.environment(), "checkout": quality.checkout(),
        "pbtune_path": str(Path(pbtune.__file__).resolve().parent), "workers": WORKERS,
        "methods": args.methods, "seeds": args.seeds, "lr_range": list(LR_RANGE),
        "hopeless_lr": HOPELESS_LR, "population": TASK.population,
        "steps_per_trial": TASK.steps_per_trial, "max_steps": TASK.max_steps,
        "budget": budget(TASK)}
    runs: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        for method in args.methods:
            runs.append(run_one(method, seed))
            r = runs[-1]
            print(f"seed {seed} {method:18s} at B {r['equal']:7.2f}  final {r['final']:7.2f}  "
                  f"restarts {r['restarts']:3d}  steps {r['steps_trained']:5d} (B "
                  f"{budget(TASK)})  hopeless steps {r['hopeless_steps']:4d}  "
                  f"{r['wall_s']:5.1f} s  [{time.perf_counter() - began:4.0f} s]", flush=True)
    summary = summarise(runs)
    meta["total_s"] = time.perf_counter() - began
    data = {"meta": meta, "summary": summary, "runs": runs}
    (args.out / "early_stop.json").write_text(json.dumps(data, indent=1) + "\n")
    table = markdown(summary, runs, meta)
    (args.out / "early_stop.md").write_text(table)
    plot(runs, args.out)
    print()
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
