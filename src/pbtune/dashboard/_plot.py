"""`pbtune plot`: the dashboard's three views as PNG files, drawn with matplotlib.

matplotlib is an optional extra (``pip install "pbtune[plot]"``), imported only here. The
figures follow the dashboard: a member has the same colour (matplotlib's tab10; past ten
members, a marker and a line style tell them apart), the y-axis of the PBT plot fits the
trained population (`_fitness.fitness_range`) with the points beyond it marked at its edge,
and the best lineage is highlighted.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from pbtune._errors import ConfigError
from pbtune.dashboard import _data as data
from pbtune.dashboard import _fitness as fitness
from pbtune.dashboard._front import front_view
from pbtune.dashboard._plot_front import front_figure
from pbtune.storages import Storage, StudyRecord
from pbtune.study import Scores

MAX_PLOT_POINTS = 20000
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")  # tab10, as in the dashboard
MARKERS = ("o", "s", "^", "D")
LINESTYLES = ("-", "--", ":", "-.")
HIGHLIGHT = "#ffbe00"
RESTART = "#c0392b"  # a restart's jump and lineage edge (an exploit's are grey)
MAX_LEGEND_MEMBERS = 20


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            'pbtune plot needs matplotlib: pip install "pbtune[plot]" (or matplotlib>=3.7)'
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _text(name: str) -> str:
    """A user's name as literal text: matplotlib would read "$...$" as math."""
    return name.replace("$", r"\$")


def member_style(member: int) -> dict[str, Any]:
    """Colour, marker and line style of a member: ten colours, then the next marker."""
    cycle = member // len(PALETTE)
    return {"color": PALETTE[member % len(PALETTE)], "marker": MARKERS[cycle % len(MARKERS)],
            "linestyle": LINESTYLES[cycle % len(LINESTYLES)]}


def write_plots(storage: Storage, study: StudyRecord, out: Path) -> list[Path]:
    """Write ``pbt.png``, ``lineage.png`` and ``schedules.png`` of ``study`` into ``out``;
    for a study of several objectives ``front.png`` first (the Pareto front), and the
    others show the first objective and the lineage of the best final trial on it."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    source = data.StudyData(storage)
    paths = [out / "pbt.png", out / "lineage.png", out / "schedules.png"]
    nodes = data.lineage_view(source, study, None)["nodes"]
    figures = [
        pbt_figure(plt, fitness.plot(source, study, MAX_PLOT_POINTS), study),
        lineage_figure(plt, nodes, study),
        schedules_figure(plt, data.schedules(source, study, None), study),
    ]
    if Scores.of(study.config).several:
        paths.insert(0, out / "front.png")
        figures.insert(0, front_figure(plt, front_view(source, study), study))
    for figure, path in zip(figures, paths, strict=True):
        figure.savefig(path, dpi=110)
        plt.close(figure)
    return paths


def pbt_figure(plt: Any, plot: dict[str, Any], study: StudyRecord) -> Any:
    """Fitness against step: a line per member broken at its exploits, dotted jumps from the
    parent's point, the best lineage highlighted, the y-axis fitted to the race."""
    fig, ax = plt.subplots(figsize=(11, 5.5))
    best = plot["best"]
    what = plot.get("objective") or "fitness"  # with several objectives, the one shown
    if best is not None and best["path"]:
        on = f" on {plot['objective']}" if plot.get("objective") else ""
        ax.plot([p[0] for p in best["path"]], [p[1] for p in best["path"]], color=HIGHLIGHT,
                lw=9, alpha=0.5, solid_capstyle="round", zorder=1,
                label=_text(f"best lineage{on}: trial {best['trial']} ({what} "
                            f"{best['fitness']:.4g})"))
    restarts = set(plot.get("restarts", ()))
    for jump in plot["jumps"]:
        restart = jump[5] in restarts
        ax.plot([jump[0], jump[2]], [jump[1], jump[3]], color=RESTART if restart else "0.35",
                linestyle=":", lw=0.8, zorder=2)
    low, high = plot["y_range"] or (None, None)
    for member in plot["members"]:
        _member_lines(ax, member, low, high)
    kinds = {"restart" if jump[5] in restarts else "exploit" for jump in plot["jumps"]}
    if "exploit" in kinds:
        ax.plot([], [], color="0.35", linestyle=":", lw=0.8, label="exploit: copied a member")
    if "restart" in kinds:
        ax.plot([], [], color=RESTART, linestyle=":", lw=0.8,
                label="restart: a lagging member copied a top one")
    clipped = _mark_outside(ax, plot, low, high)
    if low is not None:
        ax.set_ylim(low, high)
    ax.set_xlim(0, max(1, plot["max_step"]) * 1.02)
    metric = f" ({plot['metric']}, {plot['mode']})" if plot.get("metric") else ""
    ylabel = plot["label"] if plot.get("objective") else f"fitness{metric}"
    ax.set(xlabel="step", ylabel=_text(ylabel),
           title=f"{_text(study.name)}: {_text(what)} of every trial")
    ax.grid(True, color="0.92")
    if clipped:
        ax.text(0.995, 0.01, f"{clipped} trials outside the y-axis (open triangles at its edge)",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="0.35")
    _legend(ax, len(plot["members"]))
    fig.tight_layout()
    return fig


def _member_lines(ax: Any, member: dict[str, Any], low: float | None,
                  high: float | None) -> None:
    style = member_style(member["member"])
    run: list[list[Any]] = []
    for point in [*member["points"], None]:
        if point is None or (point[3] and run):
            ax.plot([p[0] for p in run], [p[1] for p in run], color=style["color"], lw=1.4,
                    linestyle=style["linestyle"], zorder=3)
            run = []
        if point is not None:
            run.append(point)
    inside = [p for p in member["points"]
              if low is None or high is None or low <= p[1] <= high]
    ax.scatter([p[0] for p in inside], [p[1] for p in inside], color=style["color"], s=16,
               marker=style["marker"], zorder=4, label=f"member {member['member']}")


def _mark_outside(ax: Any, plot: dict[str, Any], low: float | None, high: float | None) -> int:
    """Open triangles at the bottom (top) edge for points below (above) the y-range."""
    if low is None or high is None:
        return 0
    count = 0
    for member in plot["members"]:
        color = member_style(member["member"])["color"]
        for edge, marker, sign in ((low, "v", -1), (high, "^", 1)):
            steps = [p[0] for p in member["points"] if sign * (p[1] - edge) > 0]
            count += len(steps)
            ax.scatter(steps, [edge] * len(steps), marker=marker, s=40, facecolors="none",
                       edgecolors=color, linewidths=1.2, clip_on=False, zorder=5)
    return count


def _legend(ax: Any, members: int) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if members > MAX_LEGEND_MEMBERS:  # keep the best lineage and the jumps, drop the members
        keep = [i for i, label in enumerate(labels) if not label.startswith("member ")]
        handles, labels = [handles[i] for i in keep], [labels[i] for i in keep]
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0, frameon=False)


def lineage_figure(plt: Any, nodes: list[dict[str, Any]], study: StudyRecord) -> Any:
    """The best lineage: generation (whole numbers) on x, one categorical lane per member."""
    lanes = sorted({n["member"] for n in nodes})
    lane = {m: i for i, m in enumerate(lanes)}
    fig, ax = plt.subplots(figsize=(11, 1.6 + 0.45 * max(len(lanes), 2)))
    for a, b in itertools.pairwise(nodes):
        copied = a["member"] != b["member"]
        color = RESTART if b["decision"] == "restart" else "0.2" if copied else "0.6"
        ax.plot([a["generation"], b["generation"]], [lane[a["member"]], lane[b["member"]]],
                color=color, lw=1.2 if copied else 2,
                linestyle="--" if copied else "-", zorder=1)
    for m in lanes:
        style = member_style(m)
        mine = [n for n in nodes if n["member"] == m]
        ax.scatter([n["generation"] for n in mine], [lane[m]] * len(mine), s=55,
                   color=style["color"], marker=style["marker"], zorder=2)
    every = max(1, len(nodes) // 25)
    for i, node in enumerate(nodes):
        if i % every == 0 or i == len(nodes) - 1:
            ax.annotate(f"#{node['number']}", (node["generation"], lane[node["member"]]),
                        fontsize=7, textcoords="offset points", xytext=(0, 8), ha="center",
                        bbox={"fc": "white", "ec": "none", "pad": 0.5, "alpha": 0.85})
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_yticks(range(len(lanes)), [f"member {m}" for m in lanes])
    ax.set_ylim(len(lanes) - 0.4, -0.8)  # the first member at the top, room for the labels
    if nodes:
        ax.set_xlim(nodes[0]["generation"] - 0.6, nodes[-1]["generation"] + 0.6)
    last = nodes[-1]["number"] if nodes else "-"
    restarts = any(n["decision"] == "restart" for n in nodes)
    dashed = ("dashed: an exploit, red: a restart" if restarts else "dashed: an exploit")
    ax.set(xlabel="generation", title=f"{_text(study.name)}: lineage of trial {last} ({dashed})")
    ax.grid(True, axis="x", color="0.93")
    fig.tight_layout()
    return fig


def schedules_figure(plt: Any, sched: dict[str, Any], study: StudyRecord) -> Any:
    """Each param against step along the best lineage, over the population's values."""
    params = sched["params"]
    fig, axes = plt.subplots(len(params), 1, figsize=(11, 0.8 + 2.3 * max(len(params), 1)),
                             squeeze=False, sharex=True)
    for ax, param in zip(axes[:, 0], params, strict=True):
        cloud = param["population"]
        ax.scatter([(p[0] + p[1]) / 2 for p in cloud], [p[2] for p in cloud], color="0.55",
                   alpha=0.5, s=9, lw=0, label="population (sample)")
        xs: list[float] = []
        ys: list[float] = []
        for start, end, value in param["lineage"]:
            if value is not None:
                xs += [start, end]
                ys += [value, value]
        ax.plot(xs, ys, color="0.07", lw=2.2, label=f"lineage of trial {sched['trial']}")
        if param["choices"] is not None:
            ax.set_yticks(range(len(param["choices"])), [str(c) for c in param["choices"]])
            ax.set_ylim(-0.5, len(param["choices"]) - 0.5)
        elif param["log"]:
            ax.set_yscale("log")
        scale = " (log scale)" if param["log"] else ""
        ax.set_ylabel(_text(param["name"]) + scale)
        ax.grid(True, color="0.92")
    if params:
        axes[0, 0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        axes[-1, 0].set_xlabel("step")
        axes[-1, 0].set_xlim(left=0)
    fig.suptitle(f"{_text(study.name)}: hyperparameter schedule of trial {sched['trial']}")
    fig.tight_layout()
    return fig
