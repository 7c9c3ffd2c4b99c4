"""`pbtune plot`'s ``front.png``: the Pareto front of a study of several objectives, drawn
with matplotlib from the dashboard's front view (`_front.front_view`).

Two objectives: a scatter of every COMPLETE trial (faint), the members' latest trials in
their colours, the front ringed and joined by its step line, infeasible trials crossed.
Three or more: parallel coordinates, one line per trial on an axis per objective, each
axis turned so that better is up; the front's lines are drawn thick over the others.
"""

from __future__ import annotations

from typing import Any

from pbtune.storages import StudyRecord

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")  # tab10, as the other plots
FRONT = "#111111"
FAINT = "0.78"
INFEASIBLE = "#c0392b"


def _text(name: str) -> str:
    return name.replace("$", r"\$")


def _color(member: int) -> str:
    return PALETTE[member % len(PALETTE)]


def front_figure(plt: Any, view: dict[str, Any], study: StudyRecord) -> Any:
    """The front view as a figure: a scatter for two objectives, else parallel coordinates."""
    fig = _scatter(plt, view) if len(view["objectives"]) == 2 else _parallel(plt, view)
    count = len(view["front"])
    bounds = f"; constraints: {', '.join(view['constraints'])}" if view["constraints"] else ""
    fig.axes[0].set_title(_text(f"{study.name}: Pareto front of the members' latest trials "
                                f"({count} trial{'s' if count != 1 else ''}{bounds})"))
    fig.tight_layout()
    return fig


def _label(objective: dict[str, str]) -> str:
    return _text(f"{objective['name']} ({objective['mode']})")


def _scatter(plt: Any, view: dict[str, Any]) -> Any:
    fig, ax = plt.subplots(figsize=(9, 6.5))
    trials = view["trials"]
    earlier = [t for t in trials if not t["latest"]]
    ax.scatter([t["values"][0] for t in earlier], [t["values"][1] for t in earlier],
               s=10, color=FAINT, lw=0, zorder=1, label="earlier trials")
    latest = [t for t in trials if t["latest"]]
    ax.scatter([t["values"][0] for t in latest], [t["values"][1] for t in latest], s=36,
               color=[_color(t["member"]) for t in latest], zorder=3,
               label="the members' latest trials")
    if view["steps"]:
        ax.plot([p[0] for p in view["steps"]], [p[1] for p in view["steps"]], color=FRONT,
                lw=1.4, zorder=2, label="Pareto front")
    on_front = [t for t in trials if t["front"]]
    ax.scatter([t["values"][0] for t in on_front], [t["values"][1] for t in on_front], s=110,
               facecolors="none", edgecolors=FRONT, linewidths=1.5, zorder=4)
    for t in on_front:
        ax.annotate(f"#{t['number']}", (t["values"][0], t["values"][1]), fontsize=7,
                    textcoords="offset points", xytext=(6, 6))
    bad = [t for t in trials if t["infeasible"]]
    if bad:
        ax.scatter([t["values"][0] for t in bad], [t["values"][1] for t in bad], marker="x",
                   s=40, color=INFEASIBLE, zorder=5, label="infeasible (breaks a constraint)")
    x, y = view["objectives"]
    ax.set(xlabel=_label(x), ylabel=_label(y))
    ax.grid(True, color="0.92")
    ax.legend(fontsize=8, loc="best", frameon=False)
    return fig


def _parallel(plt: Any, view: dict[str, Any]) -> Any:
    objectives = view["objectives"]
    trials = view["trials"]
    fig, ax = plt.subplots(figsize=(11, 6))
    scale = [_axis_scale([t["values"][k] for t in trials], o["mode"])
             for k, o in enumerate(objectives)]
    xs = list(range(len(objectives)))

    def ys(trial: dict[str, Any]) -> list[float]:
        return [scale[k](v) for k, v in enumerate(trial["values"])]

    ordered = sorted(trials, key=lambda t: (t["front"], t["latest"]))  # the front on top
    for t in ordered:
        if t["front"]:
            style = {"color": _color(t["member"]), "lw": 2.4, "alpha": 1.0, "zorder": 4}
        elif t["latest"]:
            style = {"color": _color(t["member"]), "lw": 1.0, "alpha": 0.6, "zorder": 3}
        else:
            style = {"color": FAINT, "lw": 0.6, "alpha": 0.6, "zorder": 1}
        ax.plot(xs, ys(t), linestyle=(0, (3, 2)) if t["infeasible"] else "-", **style)
    for k, objective in enumerate(objectives):
        ax.axvline(k, color="0.3", lw=0.8, zorder=2)
        values = [t["values"][k] for t in trials]
        if values:
            worst, best = (min(values), max(values)) if objective["mode"] == "max" else (
                max(values), min(values))
            ax.annotate(f"{best:.4g}", (k, 1.0), textcoords="offset points", xytext=(3, 2),
                        fontsize=7)
            ax.annotate(f"{worst:.4g}", (k, 0.0), textcoords="offset points", xytext=(3, -9),
                        fontsize=7)
    ax.set_xticks(xs, [_label(o) + "\nbetter ↑" for o in objectives])
    ax.set_yticks([])
    ax.set_ylim(-0.06, 1.06)
    ax.set_xlim(-0.2, len(objectives) - 0.8)
    ax.plot([], [], color=FRONT, lw=2.4, label="Pareto front (member colours)")
    ax.plot([], [], color=FRONT, lw=1.0, alpha=0.6, label="the members' latest trials")
    ax.plot([], [], color=FAINT, lw=0.6, label="earlier trials")
    if any(t["infeasible"] for t in trials):
        ax.plot([], [], color="0.3", lw=1.0, linestyle=(0, (3, 2)), label="infeasible")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _axis_scale(values: list[float], mode: str) -> Any:
    """Maps an objective's value to [0, 1] along its axis, 1 the best seen."""
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    span = high - low or 1.0

    def scaled(value: float) -> float:
        share = (value - low) / span
        return share if mode == "max" else 1.0 - share

    return scaled
