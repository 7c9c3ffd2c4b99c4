"""Stragglers benchmark: heavy-tailed trial durations, asynchronous against a barrier.

    python benchmarks/stragglers.py [--segments 8] [--seed 0]

A population of 4 on 4 workers; every member trains ``--segments`` segments. The duration
of a segment is drawn once from a lognormal distribution (median 0.25 s, sigma 1.0, capped
at 4 s), seeded and keyed by (member, segment index), so every method sleeps the same draws:
a few segments are ten times slower than the median, as when a data loader stalls or a node
is shared. Methods:

- pbtune (SQLite file, 4 worker processes, ``steps_per_trial=1``): a member's next trial is
  decided the moment its trial ends; nobody waits for a slow peer.
- Ray Tune PBT ``synch=True``: a barrier at every perturbation (``perturbation_interval=1``):
  every trial waits for the slowest before exploit/explore.
- Ray Tune PBT ``synch=False`` (its default), for reference.
- ``-reuse``: the same two with ``reuse_actors=True`` (Ray's default is False: every pause
  and resume of a trial starts a new actor).

Two ideals from the draws alone (no framework cost): *asynchronous* = the longest member's
sum of durations, and *barrier* = the sum over segments of the slowest member's duration.
span = first segment start to last segment end; total = from before the study is created
(before ``ray.init``) to the end of the run. Writes results/stragglers.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

POPULATION = 4
WORKERS = 4
MEDIAN_S = 0.25
SIGMA = 1.0
CAP_S = 4.0
LOG_ENV = "PBTUNE_BENCH_SEGMENT_LOG"
SEED_ENV = "PBTUNE_BENCH_SEED"
METHODS = ("pbtune", "ray-synch", "ray-async", "ray-synch-reuse", "ray-async-reuse")


def duration(member: int, segment: int, seed: int) -> float:
    """The same heavy-tailed draw for (member, segment) in every method and process."""
    rng = np.random.default_rng([seed, member, segment])
    return float(min(CAP_S, MEDIAN_S * np.exp(SIGMA * rng.standard_normal())))


def _work(member: int, segment: int) -> tuple[float, float]:
    start = time.time()
    time.sleep(duration(member, segment, int(os.environ[SEED_ENV])))
    end = time.time()
    line = f"{start:.6f} {end:.6f} {member} {segment}\n".encode()
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return start, end


# -- pbtune -------------------------------------------------------------------------------
def train(trial: Any) -> dict[str, float]:
    value = 0.0
    if trial.parent_checkpoint is not None:
        value = json.loads((trial.parent_checkpoint / "state.json").read_text())["x"]
    _work(trial.member, trial.start_step)
    value += trial.params["lr"]
    (trial.checkpoint_dir / "state.json").write_text(json.dumps({"x": value}))
    return {"score": value}


def run_pbtune(segments: int, tmp: str) -> float:
    import pbtune
    import pbtune.study  # the API loads when first used: before the clock, as Ray's does

    started = time.time()
    study = pbtune.create_study(
        name="stragglers", storage=f"sqlite:///{tmp}/stragglers.db",
        space={"lr": pbtune.Float(1e-4, 1e-1, log=True)}, metric="score", mode="max",
        population_size=POPULATION, steps_per_trial=1, max_steps=segments,
        exploit=pbtune.Truncation(fraction=0.25), checkpoint_root=f"{tmp}/checkpoints", seed=0,
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
    member = int(tune.get_context().get_trial_name().rsplit("_", 1)[-1])
    while True:
        _work(member, iteration)
        value += config["lr"]
        iteration += 1
        directory = tempfile.mkdtemp()
        state = {"x": value, "iteration": iteration}
        (Path(directory) / "state.json").write_text(json.dumps(state))
        tune.report({"score": value}, checkpoint=tune.Checkpoint.from_directory(directory))


def run_ray(segments: int, tmp: str, synch: bool, reuse: bool) -> float:
    import ray
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    started = time.time()
    ray.init(num_cpus=WORKERS, log_to_driver=False)
    pbt = PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=1, synch=synch,
        hyperparam_mutations={"lr": tune.loguniform(1e-4, 1e-1)}, quantile_fraction=0.25,
    )
    tuner = tune.Tuner(
        ray_trainable,
        param_space={"lr": tune.loguniform(1e-4, 1e-1)},
        tune_config=tune.TuneConfig(scheduler=pbt, metric="score", mode="max",
                                    num_samples=POPULATION, max_concurrent_trials=WORKERS,
                                    reuse_actors=reuse),
        run_config=tune.RunConfig(storage_path=tmp, name="stragglers",
                                  stop={"training_iteration": segments}, verbose=0),
    )
    tuner.fit()
    ended = time.time()
    ray.shutdown()
    return ended - started


def child(method: str, segments: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-stragglers-") as tmp:
        log = Path(tmp) / "segments.log"
        os.environ[LOG_ENV] = str(log)
        if method == "pbtune":
            total = run_pbtune(segments, tmp)
        else:
            total = run_ray(segments, tmp, synch=method.startswith("ray-synch"),
                            reuse=method.endswith("-reuse"))
        rows = [line.split() for line in log.read_text().splitlines()]
    starts = [float(r[0]) for r in rows]
    ends = [float(r[1]) for r in rows]
    print(json.dumps({
        "segments_run": len(rows), "busy_s": sum(e - s for s, e in zip(starts, ends, strict=True)),
        "span_s": max(ends) - min(starts), "total_s": total,
        "timeline": [[float(r[0]), float(r[1]), int(r[2]), int(r[3])] for r in rows],
    }), flush=True)


# -- driver -------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ[SEED_ENV] = str(args.seed)
    if args.child:
        child(args.child, args.segments)
        return 0
    draws = [[duration(m, s, args.seed) for s in range(args.segments)]
             for m in range(POPULATION)]
    ideal_async = max(sum(row) for row in draws)
    ideal_barrier = sum(max(draws[m][s] for m in range(POPULATION))
                        for s in range(args.segments))
    runs: dict[str, dict[str, Any]] = {}
    for method in args.methods.split(","):
        runs[method] = common.run_json([__file__, "--child", method,
                                        "--segments", str(args.segments)], timeout=3600)
        r = runs[method]
        print(f"{method:10s} segments {r['segments_run']:3d}  span {r['span_s']:7.2f} s  "
              f"total {r['total_s']:7.2f} s", flush=True)
    for r in runs.values():
        r["span_vs_async_ideal"] = r["span_s"] / ideal_async
    summary = {m: {k: r[k] for k in ("segments_run", "busy_s", "span_s", "total_s",
                                     "process_s", "span_vs_async_ideal")}
               for m, r in runs.items()}
    rows = [["ideal, asynchronous (draws only)", POPULATION * args.segments,
             f"{ideal_async:.2f}", "", "1.00"],
            ["ideal, barrier (draws only)", POPULATION * args.segments,
             f"{ideal_barrier:.2f}", "", f"{ideal_barrier / ideal_async:.2f}"]]
    rows += [[m, int(f["segments_run"]), f"{f['span_s']:.2f}", f"{f['total_s']:.2f}",
              f"{f['span_vs_async_ideal']:.2f}"] for m, f in summary.items()]
    env = common.environment()
    markdown = "\n".join([
        "### Stragglers: heavy-tailed trial durations",
        "",
        f"Population {POPULATION} on {WORKERS} workers, {args.segments} segments per member, "
        f"a decision after every segment. Segment durations: lognormal, median {MEDIAN_S} s, "
        f"sigma {SIGMA}, capped at {CAP_S} s, seed {args.seed}, the same draw for (member, "
        f"segment) in every method (sum of draws: {sum(map(sum, draws)):.1f} s, longest "
        f"{max(map(max, draws)):.2f} s). Span: first segment start to last segment end; total: "
        "study creation (or `ray.init`) to the end of the run. One run each.",
        "",
        common.table(["method", "segments run", "span (s)", "total (s)",
                      "span / async ideal"], rows),
        "",
        common.env_line(env),
    ])
    data = {"benchmark": "stragglers",
            "setup": {"population": POPULATION, "workers": WORKERS,
                      "segments_per_member": args.segments, "median_s": MEDIAN_S,
                      "sigma": SIGMA, "cap_s": CAP_S, "seed": args.seed},
            "draws": draws, "ideal_async_s": ideal_async, "ideal_barrier_s": ideal_barrier,
            "summary": summary, "runs": runs, "environment": env}
    common.write_results("stragglers", data, markdown)
    plot(runs, ideal_async, ideal_barrier)
    print(json.dumps({"summary": summary, "ideal_async_s": ideal_async,
                      "ideal_barrier_s": ideal_barrier}, indent=2))
    print(markdown)
    return 0


def plot(runs: dict[str, dict[str, Any]], ideal_async: float, ideal_barrier: float) -> None:
    """Per method, one lane per member: when each of its segments ran."""
    plt = common.pyplot()
    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 1.2 + 1.3 * len(runs)), squeeze=False)
    horizon = max(r["span_s"] for r in runs.values())
    for ax, (method, r) in zip(axes[:, 0], runs.items(), strict=True):
        t0 = min(s for s, _, _, _ in r["timeline"])
        for start, end, member, _ in r["timeline"]:
            ax.broken_barh([(start - t0, end - start)], (member - 0.4, 0.8),
                           color="#3a7" if method == "pbtune" else "#c84", edgecolor="white",
                           linewidth=0.5)
        ax.axvline(ideal_async, color="k", linestyle=":", linewidth=1)
        ax.axvline(ideal_barrier, color="k", linestyle="--", linewidth=1)
        ax.set_xlim(0, horizon * 1.02)
        ax.set_yticks(range(POPULATION))
        ax.set_ylabel("member")
        ax.set_title(f"{method}: span {r['span_s']:.1f} s", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("seconds since the first segment started "
                           "(dotted: asynchronous ideal; dashed: barrier ideal)")
    fig.tight_layout()
    fig.savefig(common.RESULTS / "stragglers.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
