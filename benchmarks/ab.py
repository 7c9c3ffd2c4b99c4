"""Side by side: one benchmark on two checkouts of pbtune, interleaved, as ratios.

    python benchmarks/ab.py --base ../base-checkout --new . --repeats 3 overhead
    python benchmarks/ab.py --base ../base-checkout --new . utilization
    python benchmarks/ab.py --base ../base-checkout --new . scaling
    python benchmarks/ab.py --base ../base-checkout --new . decisions -- --backends postgresql

Each repeat runs the benchmark's own script of each checkout (``<tree>/benchmarks/<name>.py``,
with ``<tree>/src`` first on the path, so each runs against its own code and API), base and
new in turn, so the drift of a noisy machine is shared. It reads the figures each run wrote
(``<tree>/benchmarks/results/<name>.json``; use checkouts whose results you do not mind
overwriting, e.g. ``git worktree add``) and prints each figure's median per checkout and the
ratio new / base; the table goes to this checkout's ``results/ab-<name>.{json,md}`` too.
Only pbtune's methods are run (no Ray): the question is whether a change of pbtune moved
its own figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

Figures = Callable[[dict[str, Any]], dict[str, float]]


def _per_method(key: str) -> Figures:
    return lambda data: {f"{m} {key}": float(f[key]) for m, f in data["summary"].items()}


def _scaling(data: dict[str, Any]) -> dict[str, float]:
    return {f"{backend} {size} pair_median_ms": float(f["pair_median_ms"])
            for backend, sizes in data["results"].items() for size, f in sizes.items()}


def _decisions(data: dict[str, Any]) -> dict[str, float]:
    figures = {}
    for f in data["results"]:
        where = (f"{f['backend']} processes {f['workers']} controllers "
                 f"{f.get('controllers', 1)} p{f['population']} n{f['stored']}")
        for key in ("decisions_per_s", "median_ms", "p99_ms", "statements_per_decision"):
            figures[f"{where} {key}"] = float(f[key])
    return figures


# name -> (arguments for one run, the figures of one run's results)
BENCHMARKS: dict[str, tuple[list[str], Figures]] = {
    "overhead": (["--methods", "pbtune-sqlite,pbtune-memory", "--repeats", "1"],
                 _per_method("wall_s")),
    "utilization": (["--methods", "pbtune-sqlite,pbtune-memory", "--repeats", "1"],
                    _per_method("utilization_span")),
    "scaling": (["--sizes", "100,100000", "--rounds", "1", "--backends", "sqlite,postgresql"],
                _scaling),
    "decisions": ([], _decisions),
}


def run_once(tree: Path, name: str, args: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    script = tree / "benchmarks" / f"{name}.py"
    done = subprocess.run([sys.executable, str(script), *args], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{script} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    data = json.loads((tree / "benchmarks" / "results" / f"{name}.json").read_text())
    return BENCHMARKS[name][1](data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    parser.add_argument("--base", type=Path, required=True, help="checkout before the change")
    parser.add_argument("--new", type=Path, required=True, help="checkout after the change")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", default=common.DEFAULT_POSTGRES,
                        help="for scaling and decisions: a database of its own")
    parser.add_argument("--output", default=None,
                        help="results name (default: ab-<benchmark>)")
    parser.add_argument("extra", nargs="*",
                        help="more arguments for the benchmark, after '--'")
    args = parser.parse_args()
    extra, _ = BENCHMARKS[args.benchmark]
    if args.benchmark in ("scaling", "decisions"):
        extra = [*extra, "--postgres", args.postgres]
    extra = [*extra, *args.extra]
    trees = {"base": args.base.resolve(), "new": args.new.resolve()}
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
    for repeat in range(args.repeats):
        for label, tree in trees.items():
            figures = run_once(tree, args.benchmark, extra)
            runs[label].append(figures)
            shown = "  ".join(f"{k} {v:.4g}" for k, v in figures.items())
            print(f"repeat {repeat + 1}/{args.repeats} {label}: {shown}", flush=True)
    rows, ratios = [], {}
    for key in runs["base"][0]:
        base = common.median([r[key] for r in runs["base"]])
        new = common.median([r[key] for r in runs["new"]])
        ratios[key] = new / base
        rows.append([key, f"{base:.4g}", f"{new:.4g}", f"{new / base:.3f}"])
    shown = common.table(["figure (median)", "base", "new", "new / base"], rows)
    print(shown)
    commits = {label: _commit(tree) for label, tree in trees.items()}
    command = " ".join(["python", "benchmarks/ab.py", *sys.argv[1:]])
    markdown = "\n".join([
        f"### Side by side: {args.benchmark}, base {commits['base']} against new "
        f"{commits['new']}", "",
        f"`{command}`: {args.repeats} interleaved runs of each checkout's own "
        f"`benchmarks/{args.benchmark}.py {' '.join(extra)}`; medians.", "",
        shown, "", common.env_line(common.environment()),
    ])
    common.write_results(args.output or f"ab-{args.benchmark}", {
        "benchmark": f"ab-{args.benchmark}", "command": command, "commits": commits,
        "runs": runs, "ratios": ratios, "environment": common.environment(),
    }, markdown)
    return 0


def _commit(tree: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree,
                          capture_output=True, text=True)
    return done.stdout.strip() or "?"


if __name__ == "__main__":
    raise SystemExit(main())
