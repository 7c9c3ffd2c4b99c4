"""Sensitivity to the initial choices: the quality benchmark with a badly placed lr range.

    python benchmarks/sensitivity.py                    # digits and rl, shifts 0, 1, 2
    python benchmarks/sensitivity.py --tasks rl --seeds 2 --methods tournament,ray --shifts 0,2

Li et al. ("A Generalized Framework for Population Based Training", KDD 2019) claim, among
other things, that PBT is less sensitive than its baselines to how the search space is set
up. Here each task's learning-rate range is shifted up by 0, 1 and 2 decades: digits' lr
[1e-4, 1] becomes [1e-3, 10] and [1e-2, 100], rl's [1e-4, 1e-1] becomes [1e-3, 1] and
[1e-2, 10]. The shifted ranges are mostly too large (the net diverges, the policy is
destroyed), with the good rates kept near the lower edge, so a member can still get there by
exploring, and a schedule can still use them; nothing else changes (same population, budget,
other params, seeds). Each run is exactly a quality.py run (the same runners, the same
initial population for one seed and one shift, the same best at equal compute, B).

Reported per (task, method), over the best at B: for each shift, the median and IQR over
seeds; over all the runs of every shift and seed together, the median and IQR; and the
range of the per-shift medians (largest - smallest), the sensitivity to the shift. Writes
``sensitivity.json`` (every run, with its trace), ``sensitivity.md`` and ``sensitivity.png``
into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import quality  # noqa: E402
from _quality_report import METHODS, digits_for, stats  # noqa: E402
from tasks import TASKS, Task  # noqa: E402

import pbtune  # noqa: E402

PARAM = "lr"
DEFAULT_TASKS = ("digits", "rl")


def shifted(task: Task, decades: int) -> Task:
    """``task`` with its lr range multiplied by 10**decades (both bounds)."""
    lr = task.space[PARAM]
    assert isinstance(lr, pbtune.Float)
    factor = 10.0**decades
    space = {**task.space, PARAM: dataclasses.replace(lr, low=lr.low * factor,
                                                      high=lr.high * factor)}
    return dataclasses.replace(task, space=space)


def lr_range(task: Task) -> str:
    lr = task.space[PARAM]
    assert isinstance(lr, pbtune.Float)
    return f"[{lr.low:g}, {lr.high:g}]"


def summarise(runs: Sequence[Mapping[str, Any]], shifts: Sequence[int]
              ) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for task_name in dict.fromkeys(r["task"] for r in runs):
        out[task_name] = {}
        for method in METHODS:
            mine = [r for r in runs if r["task"] == task_name and r["method"] == method]
            if not mine:
                continue
            per_shift = {str(k): stats([r["equal"] for r in mine if r["shift"] == k])
                         for k in shifts}
            medians = [s["median"] for s in per_shift.values()]
            out[task_name][method] = {
                "per_shift": per_shift,
                "all": stats([r["equal"] for r in mine]),
                "range_of_medians": max(medians) - min(medians),
            }
    return out


def markdown(summary: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    shifts = meta["shifts"]
    lines = [
        "# Sensitivity to the learning-rate range",
        "",
        f"The lr range of each task shifted up by {', '.join(map(str, shifts))} decades "
        "(both bounds x 10^shift); everything else as in quality.py. Figure: the best at "
        "equal compute (B = population x max_steps steps trained), over seeds "
        f"({', '.join(f'{t} {n}' for t, n in meta['seeds'].items())}) and shifts, "
        f"{meta['workers']} workers.",
        "",
        "| task | lr ranges | method | " + " | ".join(
            f"shift {k}: median (IQR)" for k in shifts)
        + " | all runs: median (IQR) | **range of medians** |",
        "|---|---|---|" + "---:|" * (len(shifts) + 2),
    ]
    for task_name, methods in summary.items():
        nd = digits_for(task_name)
        ranges = " / ".join(meta["ranges"][task_name])
        for method, s in methods.items():
            cells = [f"{p['median']:.{nd}f} ({p['iqr']:.{nd}f})" for p in s["per_shift"].values()]
            a = s["all"]
            lines.append(
                f"| {task_name} | {ranges} | {method} | " + " | ".join(cells)
                + f" | {a['median']:.{nd}f} ({a['iqr']:.{nd}f}) | "
                f"**{s['range_of_medians']:.{nd}f}** |"
            )
    lines += [
        "",
        "*range of medians*: the largest per-shift median minus the smallest, how much the "
        "method's result moves when the range is placed badly (smaller is less sensitive). "
        "*all runs*: every seed of every shift pooled.",
        "",
        f"Machine: {meta['machine']}; Python {meta['python']}; pbtune {meta['pbtune']} "
        f"(imported from {meta['pbtune_path']}); ray {meta.get('ray')}; total "
        f"{meta['total_s']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def plot(summary: Mapping[str, Any], shifts: Sequence[int], out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(summary), figsize=(5.5 * len(summary), 4.2), squeeze=False)
    for ax, (task_name, methods) in zip(axes[0], summary.items(), strict=True):
        for i, (method, s) in enumerate(methods.items()):
            x = [k + (i - (len(methods) - 1) / 2) * 0.04 for k in shifts]
            p = list(s["per_shift"].values())
            ax.errorbar(x, [v["median"] for v in p],
                        yerr=[[v["median"] - v["q25"] for v in p],
                              [v["q75"] - v["median"] for v in p]],
                        fmt="--o" if method.endswith("-pb2") else "-o", capsize=3,
                        markersize=4, label=method)
        ax.set_xticks(list(shifts))
        ax.set_xlabel("lr range shifted up by (decades)")
        ax.set_ylabel(f"best {TASKS[task_name].metric} at B (median, IQR)")
        ax.set_title(task_name)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "sensitivity.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Sensitivity of each method to a learning-"
                                     "rate range shifted toward bad values.")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                        help="comma-separated tasks with an 'lr' param (default: %(default)s)")
    parser.add_argument("--shifts", default="0,1,2",
                        help="decades to shift the lr range up by (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds 0..N-1 on every task (default: the task's own)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated, from: %(default)s")
    parser.add_argument("--out", type=Path, default=quality.RESULTS,
                        help="output directory (default: benchmarks/results)")
    args = parser.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.methods = [m for m in args.methods.split(",") if m]
    args.shifts = [int(k) for k in args.shifts.split(",") if k]
    quality.check_names(parser, args.tasks, args.methods)
    for t in args.tasks:
        if not isinstance(TASKS[t].space.get(PARAM), pbtune.Float):
            parser.error(f"task {t!r} has no Float {PARAM!r} param to shift")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    methods, ray_version = quality.available(args.methods)
    seeds = {t: args.seeds or TASKS[t].seeds for t in args.tasks}
    meta = quality.environment(args.tasks, methods, ray_version)
    meta.update(shifts=args.shifts, seeds=seeds, param=PARAM, ranges={
        t: [lr_range(shifted(TASKS[t], k)) for k in args.shifts] for t in args.tasks})
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sensitivity-ray-storage-") as ray_root:
        for task_name in args.tasks:
            for shift in args.shifts:
                task = shifted(TASKS[task_name], shift)
                for seed in range(seeds[task_name]):
                    for method in methods:
                        run = quality.run_method(task, method, seed, Path(ray_root))
                        runs.append({**run, "shift": shift})
                        print(f"shift {shift}  {quality.describe(run, task, began)}",
                              flush=True)
    summary = summarise(runs, args.shifts)
    meta["total_s"] = time.perf_counter() - began
    data = {"meta": meta, "summary": summary, "runs": runs}
    (args.out / "sensitivity.json").write_text(json.dumps(data, indent=1, allow_nan=True) + "\n")
    table = markdown(summary, meta)
    (args.out / "sensitivity.md").write_text(table)
    plot(summary, args.shifts, args.out)
    print()
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
