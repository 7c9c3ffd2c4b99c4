"""The figures, targets, table and plots of the quality benchmark (quality.py).

Everything here works on plain records: a run is a dict with its task, method, seed and
``trace``, the (cumulative steps trained, step, fitness) of every result in report order.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tasks import Task

METHODS = ("tournament", "truncation", "tournament-pb2", "truncation-pb2", "multirate",
           "random", "ray", "ray-pb2")
PBTUNE_PBT = ("tournament", "truncation", "tournament-pb2", "truncation-pb2", "multirate")
PB2_OF_PERTURB = {"tournament": "tournament-pb2", "truncation": "truncation-pb2"}
RAY = ("ray", "ray-pb2")
SCHEDULE_TASKS = ("deceptive", "rl")  # where a schedule beats every fixed setting

Trace = list[tuple[int, int, float]]


# -- figures of one run -------------------------------------------------------------------------
def cumulative(done: Sequence[tuple[int, int, float]]) -> Trace:
    """(steps trained, step, fitness) in report order -> (cumulative steps, step, fitness)."""
    total, out = 0, []
    for steps, step, value in done:
        total += steps
        out.append((total, step, value))
    return out


def budget(task: Task) -> int:
    """B, the nominal compute: population x max_steps steps trained."""
    return task.population * task.max_steps


def best_at_budget(trace: Trace, limit: int) -> float:
    """The best fitness of any result whose cumulative steps trained are <= ``limit``."""
    return max(v for c, _, v in trace if c <= limit)


def final_fitness(trace: Trace, max_steps: int) -> float:
    """The best result at step ``max_steps`` (however many steps were trained)."""
    return max(v for _, s, v in trace if s == max_steps)


def best_so_far(trace: Trace, grid: np.ndarray) -> np.ndarray:
    """Best fitness reported with cumulative steps <= x, at each x of ``grid``; NaN before the
    run's first result and after its last (its total steps trained)."""
    cums = np.array([c for c, _, _ in trace], dtype=float)
    best = np.maximum.accumulate(np.array([v for _, _, v in trace], dtype=float))
    index = np.searchsorted(cums, grid, side="right") - 1
    out = np.where(index >= 0, best[np.clip(index, 0, None)], np.nan)
    out[grid > cums[-1]] = np.nan
    return out


# -- over seeds ---------------------------------------------------------------------------------
def stats(values: Sequence[float]) -> dict[str, Any]:
    array = np.array(values, dtype=float)
    q25, q50, q75 = np.percentile(array, [25, 50, 75])
    return {"median": float(q50), "q25": float(q25), "q75": float(q75),
            "iqr": float(q75 - q25), "min": float(array.min()), "max": float(array.max()),
            "per_seed": [float(v) for v in array]}


def summarise(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    by: dict[str, dict[str, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
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


# -- targets ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One target on one task: what is compared, whether it holds, and the numbers."""

    name: str
    met: bool
    numbers: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def noise(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """The noise of a comparison of two methods: their pooled IQR (of the best at B over
    seeds), sqrt((IQR_a^2 + IQR_b^2) / 2), as a pooled standard deviation is formed."""
    return math.sqrt((a["equal"]["iqr"] ** 2 + b["equal"]["iqr"] ** 2) / 2.0)


def task_checks(task_name: str, methods: Mapping[str, Mapping[str, Any]], nd: int
                ) -> list[Check]:
    """The targets of one task, each on the median best at B over seeds; a check whose
    methods did not run is left out."""
    med = {m: s["equal"]["median"] for m, s in methods.items()}

    def best_of(names: Sequence[str]) -> str | None:
        present = [m for m in names if m in med]
        return max(present, key=lambda m: med[m]) if present else None

    def compare(a: str, b: str, name: str, margin: float | None = None, strict: bool = False
                ) -> Check:
        """med[a] >= med[b] + margin, or > if ``strict`` (a negative margin allows noise)."""
        bound = med[b] + (margin or 0.0)
        met = med[a] > bound if strict else med[a] >= bound
        text = f"{a} {med[a]:.{nd}f} {'>' if strict else '>='} {b} {med[b]:.{nd}f}"
        if margin is not None:
            text += f" {'-' if margin < 0 else '+'} noise {abs(margin):.{nd}f} = {bound:.{nd}f}"
        return Check(name, bool(met), text)

    checks: list[Check] = []
    for mine in ("tournament", "truncation"):
        if mine in med and "ray" in med:
            checks.append(compare(mine, "ray", f"{mine} >= ray"))
        if mine in med and "random" in med:
            checks.append(compare(mine, "random", f"{mine} > random", strict=True))
    best_pb2 = best_of(list(PB2_OF_PERTURB.values()))
    if best_pb2 is not None and "ray-pb2" in med:
        checks.append(compare(best_pb2, "ray-pb2", "best pbtune PB2 >= ray-pb2"))
    for perturb, pb2 in PB2_OF_PERTURB.items():
        if perturb in med and pb2 in med:
            margin = noise(methods[pb2], methods[perturb])
            checks.append(compare(pb2, perturb, f"{pb2} >= {perturb} - noise", -margin))
    best = best_of(PBTUNE_PBT)
    if best is not None and task_name in SCHEDULE_TASKS:
        for other in ("ray", "random"):
            if other in med:
                margin = noise(methods[best], methods[other])
                checks.append(compare(best, other, f"best pbtune > {other} + noise", margin,
                                      strict=True))
    best_ray = best_of(RAY)
    if best is not None and best_ray is not None:
        margin = noise(methods[best], methods[best_ray])
        checks.append(compare(best, best_ray, "best pbtune >= best Ray - noise", -margin))
    return checks


def targets(summary: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, list[Check]]:
    return {task_name: task_checks(task_name, methods, digits_for(task_name))
            for task_name, methods in summary.items()}


# -- the table ----------------------------------------------------------------------------------
def digits_for(task_name: str) -> int:
    return {"toy": 6, "triangle": 2, "rl": 1}.get(task_name, 4)


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
NOISE = (
    "**Noise** of a comparison of two methods A and B: their pooled IQR of the best at B, "
    "sqrt((IQR_A^2 + IQR_B^2) / 2). *best pbtune* is the pbtune PBT method (tournament, "
    "truncation, tournament-pb2, truncation-pb2, multirate) with the highest median on the "
    "task, *best "
    "pbtune PB2* the better of the two PB2 ones, *best Ray* the better of ray and ray-pb2. "
    "'A > B + noise' asks the medians to differ by more than the spread of the seeds; 'A >= B "
    "- noise' allows A to be below B by no more than it."
)


def markdown(summary: Mapping[str, Any], checks: Mapping[str, Sequence[Check]],
             meta: Mapping[str, Any]) -> str:
    seeds = ", ".join(f"{t} {meta['tasks'][t]['seeds']}" for t in summary)
    lines = [
        "# Quality at equal compute",
        "",
        f"Seeds per (task, method): {seeds}; {meta['workers']} workers; median, quartiles "
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
    lines += ["", "Targets (median best at equal compute, B):", "", NOISE, ""]
    for task_name, rows in checks.items():
        for check in rows:
            verdict = "met" if check.met else "**NOT met**"
            lines.append(f"- {task_name}: {check.name}: {verdict} ({check.numbers})")
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
        "result (PB2 methods dashed); the dotted vertical line is B.",
        "",
        f"Machine: {meta['machine']}; Python {meta['python']}; pbtune {meta['pbtune']} "
        f"(imported from {meta['pbtune_path']}; {source(meta)}); ray {meta.get('ray')}; "
        f"gymnasium {meta.get('gymnasium')}; torch {meta.get('torch')}; total "
        f"{meta['total_s']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def source(meta: Mapping[str, Any]) -> str:
    head, modified = meta["checkout"]["head"], meta["checkout"]["src_modified"]
    if Path(meta["pbtune_path"]) == Path(__file__).resolve().parent.parent / "src" / "pbtune":
        return f"this checkout at {head}, src/ modified: {modified}"
    return f"not this checkout's src/; the checkout was at {head}"


# -- the plots ----------------------------------------------------------------------------------
Y_LIMITS = {"toy": (0.9, 1.205), "digits": (0.9, 0.99), "torch": (0.9, 0.99)}


def plot(runs: Sequence[Mapping[str, Any]], task: Task, out: Path) -> Path | None:
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
        style = "--" if method.endswith("-pb2") else "-"
        (line,) = ax.plot(grid, q50, style, label=f"{method} (n={len(group)})")
        ax.fill_between(grid, q25, q75, color=line.get_color(), alpha=0.15)
    ax.axvline(b, color="black", linestyle=":", linewidth=1,
               label=f"B = {task.population} x {task.max_steps} = {b}")
    ax.set_xlabel("steps trained, cumulative over the population (in report order)")
    ax.set_ylabel(f"best {task.metric} reported so far")
    ax.set_title(task.title, fontsize=9)
    if task.name in Y_LIMITS:
        ax.set_ylim(*Y_LIMITS[task.name])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"quality_{task.name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
