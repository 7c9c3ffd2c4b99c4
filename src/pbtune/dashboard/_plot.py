"""`pbtune plot`: the dashboard's three views as PNG files, drawn with matplotlib.

matplotlib is an optional extra (``pip install "pbtune[plot]"``), imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pbtune._errors import ConfigError
from pbtune.dashboard import _data as data
from pbtune.storages import Storage, StudyRecord

MAX_PLOT_POINTS = 20000


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


def _color(member: int) -> Any:
    import colorsys

    return colorsys.hls_to_rgb((member * 137.508 % 360) / 360, 0.45, 0.65)


def write_plots(storage: Storage, study: StudyRecord, out: Path) -> list[Path]:
    """Write ``pbt.png``, ``lineage.png`` and ``schedules.png`` of ``study`` into ``out``."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    source = data.StudyData(storage)
    paths = [out / "pbt.png", out / "lineage.png", out / "schedules.png"]
    _pbt(plt, data.plot(source, study, MAX_PLOT_POINTS), study, paths[0])
    nodes = data.lineage_view(source, study, None)["nodes"]
    _lineage(plt, nodes, study, paths[1])
    _schedules(plt, data.schedules(source, study, None), nodes, paths[2])
    return paths


def _pbt(plt: Any, plot: dict[str, Any], study: StudyRecord, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 5))
    for jump in plot["jumps"]:
        ax.plot([jump[0], jump[2]], [jump[1], jump[3]], color="0.4", linestyle=":", lw=0.8)
    for member in plot["members"]:
        color = _color(member["member"])
        run: list[list[Any]] = []
        for point in [*member["points"], None]:
            if point is None or (point[3] and run):
                ax.plot([p[0] for p in run], [p[1] for p in run], color=color, lw=1.2)
                run = []
            if point is not None:
                run.append(point)
        ax.scatter([p[0] for p in member["points"]], [p[1] for p in member["points"]],
                   color=color, s=8, label=f"member {member['member']}")
    ax.set(xlabel="step", ylabel="fitness", title=f"{_text(study.name)}: fitness of every trial")
    if 0 < len(plot["members"]) <= 12:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _lineage(plt: Any, nodes: list[dict[str, Any]], study: StudyRecord, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    xs = [n["generation"] for n in nodes]
    ys = [n["member"] for n in nodes]
    ax.plot(xs, ys, color="0.5", lw=1, zorder=1)
    ax.scatter(xs, ys, c=[_color(m) for m in ys], s=40, zorder=2)
    every = max(1, len(nodes) // 30)
    for i, node in enumerate(nodes):
        if i % every == 0 or i == len(nodes) - 1:
            ax.annotate(f"#{node['id']}", (node["generation"], node["member"]), fontsize=7,
                        textcoords="offset points", xytext=(0, 7), ha="center")
    last = nodes[-1]["id"] if nodes else "-"
    ax.set(xlabel="generation", ylabel="member",
           title=f"{_text(study.name)}: lineage of trial {last}")
    ax.set_yticks(sorted(set(ys)))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _schedules(plt: Any, sched: dict[str, Any], nodes: list[dict[str, Any]], path: Path) -> None:
    params = sched["params"]
    fig, axes = plt.subplots(len(params), 1, figsize=(10, 2.2 * max(len(params), 1)),
                             squeeze=False)
    color = _color(nodes[-1]["member"]) if nodes else "C0"
    for ax, param in zip(axes[:, 0], params, strict=True):
        cloud = param["population"]
        ax.scatter([(p[0] + p[1]) / 2 for p in cloud], [p[2] for p in cloud], color="0.75", s=5)
        xs: list[float] = []
        ys: list[float] = []
        for start, end, value in param["lineage"]:
            if value is not None:
                xs += [start, end]
                ys += [value, value]
        ax.plot(xs, ys, color=color, lw=2.5)
        if param["choices"] is not None:
            ax.set_yticks(range(len(param["choices"])), [str(c) for c in param["choices"]])
        elif param["log"]:
            ax.set_yscale("log")
        ax.set_ylabel(_text(param["name"]))
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
