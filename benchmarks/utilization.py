"""Utilization benchmark: how busy the workers are when each trial sleeps 0.2 s.

    python benchmarks/utilization.py [--segments 25] [--methods pbtune-sqlite,pbtune-memory,ray]
        [--base ../base-checkout]

A population of 8, 2 workers; every member trains ``--segments`` segments; a segment is
0.2 s of "training" (a sleep) plus a tiny JSON checkpoint. pbtune runs one trial per segment
(``steps_per_trial=1``), so it decides exploit/explore after every segment; Ray Tune PBT gets
the same decision frequency (``perturbation_interval=1``, a checkpoint every iteration):
``ray`` with Ray's default ``reuse_actors=False``, ``ray-reuse`` with ``reuse_actors=True``.

busy = the sum of segment durations measured inside the training function (entry to return
for pbtune; the work of one iteration for Ray, without ``tune.report``).

- utilization (span): busy / (workers x span), span = first segment start to last segment end.
  **The 0.99 target applies to this one**: it is what the framework costs between trials.
- utilization (total): busy / (workers x total), total = from before the study is created (before
  ``ray.init``) until the run returned: startup and shutdown included.
``--base`` puts another checkout's pbtune beside this one's (``base pbtune-sqlite``, ...), in
the same interleaved rounds. Writes results/utilization.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

POPULATION = 8
WORKERS = 2
SLEEP_S = 0.2
LOG_ENV = "PBTUNE_BENCH_SEGMENT_LOG"
METHODS = ("pbtune-sqlite", "pbtune-memory", "ray", "ray-reuse")
TARGET = 0.99  # issue 17 (it was 0.97)


def _log_segment(start: float, end: float, member: Any) -> None:
    line = f"{start:.6f} {end:.6f} {member}\n".encode()
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


# -- pbtune -------------------------------------------------------------------------------
def train(trial: Any) -> dict[str, float]:
    start = time.time()
    value = 0.0
    if trial.parent_checkpoint is not None:
        value = json.loads((trial.parent_checkpoint / "state.json").read_text())["x"]
    time.sleep(SLEEP_S)
    value += trial.params["lr"]
    (trial.checkpoint_dir / "state.json").write_text(json.dumps({"x": value}))
    _log_segment(start, time.time(), trial.member)
    return {"score": value}


def run_pbtune(memory: bool, segments: int, tmp: str) -> float:
    import pbtune
    import pbtune.study  # the API loads when first used: before the clock, as Ray's does

    started = time.time()
    study = pbtune.create_study(
        name="utilization",
        storage=None if memory else f"sqlite:///{tmp}/utilization.db",
        space={"lr": pbtune.Float(1e-4, 1e-1, log=True)},
        metric="score", mode="max",
        population_size=POPULATION, steps_per_trial=1, max_steps=segments,
        exploit=pbtune.Truncation(fraction=0.25),
        checkpoint_root=f"{tmp}/checkpoints", seed=0,
    )
    study.optimize(train, workers=WORKERS, show_progress=False)
    ended = time.time()
    study.storage.dispose()
    return ended - started


# -- Ray Tune -----------------------------------------------------------------------------
def ray_trainable(config: dict[str, Any]) -> None:
    from ray import tune

    value, iteration = 0.0, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = json.loads((Path(directory) / "state.json").read_text())
        value, iteration = state["x"], state["iteration"]
    name = tune.get_context().get_trial_name()
    while True:
        start = time.time()
        time.sleep(SLEEP_S)
        value += config["lr"]
        iteration += 1
        directory = tempfile.mkdtemp()
        state = {"x": value, "iteration": iteration}
        (Path(directory) / "state.json").write_text(json.dumps(state))
        _log_segment(start, time.time(), name)
        tune.report({"score": value}, checkpoint=tune.Checkpoint.from_directory(directory))


def run_ray(segments: int, tmp: str, reuse: bool) -> float:
    import ray
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    started = time.time()
    ray.init(num_cpus=WORKERS, log_to_driver=False)
    pbt = PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=1,
        hyperparam_mutations={"lr": tune.loguniform(1e-4, 1e-1)}, quantile_fraction=0.25,
    )
    tuner = tune.Tuner(
        ray_trainable,
        param_space={"lr": tune.loguniform(1e-4, 1e-1)},
        tune_config=tune.TuneConfig(scheduler=pbt, metric="score", mode="max",
                                    num_samples=POPULATION, max_concurrent_trials=WORKERS,
                                    reuse_actors=reuse),
        run_config=tune.RunConfig(storage_path=tmp, name="utilization",
                                  stop={"training_iteration": segments}, verbose=0),
    )
    tuner.fit()
    ended = time.time()
    ray.shutdown()
    return ended - started


def child(method: str, segments: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-utilization-") as tmp:
        log = Path(tmp) / "segments.log"
        os.environ[LOG_ENV] = str(log)
        if method.startswith("ray"):
            total = run_ray(segments, tmp, reuse=method == "ray-reuse")
        else:
            total = run_pbtune(method == "pbtune-memory", segments, tmp)
        rows = [line.split() for line in log.read_text().splitlines()]
    starts = [float(r[0]) for r in rows]
    ends = [float(r[1]) for r in rows]
    busy = sum(e - s for s, e in zip(starts, ends, strict=True))
    span = max(ends) - min(starts)
    lanes = _lanes(list(zip(starts, ends, strict=True)))
    gaps = [b[0] - a[1] for lane in lanes for a, b in pairwise(lane)]
    print(json.dumps({
        "segments_run": len(rows), "busy_s": busy, "span_s": span, "total_s": total,
        "utilization_span": busy / (WORKERS * span),
        "utilization_total": busy / (WORKERS * total),
        # Where the span's idle time goes: between segments, or a slot that starts late
        # or ends early (a worker still starting; the last segments of a run).
        "gap_median_ms": 1000 * common.median(gaps) if gaps else 0.0,
        "idle_between_s": sum(gaps),
        "idle_edges_s": sum(lane[0][0] - min(starts) + max(ends) - lane[-1][1]
                            for lane in lanes),
        "timeline": [[s, e, r[2]] for s, e, r in zip(starts, ends, rows, strict=True)],
    }), flush=True)


def _lanes(segments: list[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """The segments as worker slots, assigned greedily (a slot takes the next segment
    that starts once it is free)."""
    lanes: list[list[tuple[float, float]]] = []
    for start, end in sorted(segments):
        lane = next((lane for lane in lanes if lane[-1][1] <= start + 1e-3), None)
        if lane is None:
            lanes.append([(start, end)])
        else:
            lane.append((start, end))
    return lanes


# -- driver -------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=25, help="segments per member")
    parser.add_argument("--ray-segments", type=int, default=None,
                        help="segments per member for Ray (default: --segments); Ray takes "
                        "seconds per segment on a small machine, and utilization is a ratio")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--base", type=Path, default=None,
                        help="another checkout (git worktree add ../base main) whose pbtune "
                        "runs beside this one's")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.segments)
        return 0
    methods = args.methods.split(",")
    trees = {"": common.ROOT, **({"base ": args.base.resolve()} if args.base else {})}
    labels = {f"{prefix}{m}": (m, tree) for m in methods for prefix, tree in trees.items()
              if prefix == "" or m.startswith("pbtune")}
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for repeat in range(args.repeats):
        for label, (method, tree) in labels.items():
            segments = args.segments
            if method.startswith("ray") and args.ray_segments:
                segments = args.ray_segments
            result = common.run_json([__file__, "--child", method,
                                      "--segments", str(segments)], timeout=3600,
                                     env=common.tree_env(tree))
            result["segments_per_member"] = segments
            runs[label].append(result)
            print(f"repeat {repeat + 1}/{args.repeats} {label:19s} "
                  f"span {result['span_s']:6.2f} s  total {result['total_s']:6.2f} s  "
                  f"util(span) {result['utilization_span']:.4f}  "
                  f"util(total) {result['utilization_total']:.4f}  "
                  f"gap {result['gap_median_ms']:.2f} ms  "
                  f"idle between {result['idle_between_s']:.3f} s  "
                  f"at the edges {result['idle_edges_s']:.3f} s", flush=True)
    summary = {
        method: {
            key: common.median([r[key] for r in results])
            for key in ("segments_run", "busy_s", "span_s", "total_s", "process_s",
                        "utilization_span", "utilization_total", "gap_median_ms",
                        "idle_between_s", "idle_edges_s")
        }
        for method, results in runs.items()
    }
    for figures in summary.values():
        figures["utilization_process"] = figures["busy_s"] / (WORKERS * figures["process_s"])
    target = {m: summary[m]["utilization_span"] >= TARGET for m in summary
              if m.startswith("pbtune")}
    env = common.environment()
    rows = [[m, int(f["segments_run"]), f"{f['busy_s']:.1f}", f"{f['span_s']:.2f}",
             f"{f['total_s']:.2f}", f"{f['utilization_span']:.4f}",
             f"{f['utilization_total']:.4f}", f"{f['utilization_process']:.4f}",
             f"{f['gap_median_ms']:.2f}", f"{f['idle_between_s']:.3f}",
             f"{f['idle_edges_s']:.3f}"]
            for m, f in summary.items()]
    command = " ".join(["python", "benchmarks/utilization.py", *sys.argv[1:]])
    markdown = "\n".join([
        "### Utilization: trials of 0.2 s",
        "",
        f"`{command}`:",
        "",
        f"Population {POPULATION}, {WORKERS} workers, {args.segments} segments of "
        f"{SLEEP_S} s per member"
        + (f" ({args.ray_segments} for Ray)" if args.ray_segments else "")
        + ", a decision after every segment (Ray: "
        "`perturbation_interval=1`). busy = sum of segment durations measured inside the "
        "training function. Utilization = busy / (workers x wall) where wall is the *span* "
        "(first segment start to last segment end; the target uses this one), the *total* "
        "(study creation or `ray.init` to the end of the run) or the whole *process*"
        + (f"; median of {args.repeats} interleaved runs." if args.repeats > 1 else ".")
        + (f" `base ...`: the pbtune of {common.commit_of(args.base)} (`--base {args.base}`), "
           "in the same rounds." if args.base else ""),
        "",
        common.table(["method", "segments", "busy (s)", "span (s)", "total (s)",
                      "util. span", "util. total", "util. process", "gap median (ms)",
                      "idle between (s)", "idle at the edges (s)"], rows),
        "",
        f"Target: pbtune utilization (span) >= {TARGET}: "
        + ", ".join(f"{m} {'met' if ok else 'MISSED'}" for m, ok in target.items()) + ".",
        "",
        common.env_line(env),
    ])
    data = {"benchmark": "utilization",
            "setup": {"population": POPULATION, "workers": WORKERS, "sleep_s": SLEEP_S,
                      "segments_per_member": args.segments,
                      "ray_segments_per_member": args.ray_segments or args.segments,
                      "repeats": args.repeats,
                      "base": ({"path": str(args.base), "commit": common.commit_of(args.base)}
                               if args.base else None)},
            "summary": summary, "target": f"pbtune utilization (span) >= {TARGET}",
            "target_met": target, "runs": runs, "environment": env}
    common.write_results("utilization", data, markdown)
    plot({m: results[0]["timeline"] for m, results in runs.items()})
    print(json.dumps({"summary": summary, "target_met": target}, indent=2))
    print(markdown)
    return 0


def plot(timelines: dict[str, list[list[Any]]]) -> None:
    """One Gantt strip per method: which worker lane is busy when (lanes assigned greedily)."""
    plt = common.pyplot()
    fig, axes = plt.subplots(len(timelines), 1, figsize=(8, 1.3 + 1.1 * len(timelines)),
                             squeeze=False)
    for ax, (method, timeline) in zip(axes[:, 0], timelines.items(), strict=True):
        t0 = min(s for s, _, _ in timeline)
        lanes = _lanes([(s, e) for s, e, _ in timeline])
        color = "#c84" if method.startswith("ray") else "#9bc" if method.startswith("base") \
            else "#3a7"
        for number, lane in enumerate(lanes):
            ax.broken_barh([(start - t0, end - start) for start, end in lane],
                           (number - 0.4, 0.8), color=color)
        ax.set_yticks(range(len(lanes)))
        ax.set_ylabel("slot")
        ax.set_title(method, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("seconds since the first segment started (gaps: framework time)")
    fig.tight_layout()
    fig.savefig(common.RESULTS / "utilization.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
