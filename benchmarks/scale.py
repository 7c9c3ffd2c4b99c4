"""Scale benchmark: where one study stops feeding more workers, found with the simulator.

    python benchmarks/scale.py [--storages sqlite,postgresql] [--workers 10,100,1000,10000]
        [--populations 8,100,1000] [--trials-per-member 20] [--trial-s 60] [--seeds 1]
        [--postgres postgresql://postgres@127.0.0.1:5432/pbtune_bench_scale]

Each point is one `pbtune.simulation.simulate` run: ``workers`` virtual workers run the
real controller against the real storage (a fresh SQLite file, or a PostgreSQL database of
this benchmark's own, its pbtune tables dropped before each run), on a virtual clock; the
toy quadratic trains, each trial taking ``--trial-s`` virtual seconds (so heartbeats go
as on a cluster: one per heartbeat interval per training worker). Every storage call runs
for real, one at a time, in this process.

Printed per point: decisions (COMPLETE results told), the real seconds the run took,
decisions per real second, the real ask+tell milliseconds (median, p99), storage calls per
decision, the virtual utilization, and what users plan with: one study at this rate feeds
``decisions/s x T`` workers of T-second trials, since each worker needs one decision per
trial. The rate is a lower bound for a real cluster: here every call waits for the one
before it, while on a cluster heartbeats and claims of different trials run side by side
(only the decisions of one study wait for each other, on its lock).

Writes results/scale.{json,md}.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/pbtune_bench_scale"
STEPS_PER_TRIAL = 4


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def fresh_postgres(url: str) -> str:
    """This benchmark's own database, created if missing, its pbtune tables dropped."""
    import sqlalchemy

    from pbtune.storages._engine import normalize_url
    from pbtune.storages._schema import metadata

    base, _, name = normalize_url(url).rpartition("/")
    admin = sqlalchemy.create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.exec_driver_sql(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)).first()
        if not exists:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    engine = sqlalchemy.create_engine(normalize_url(url))
    metadata.drop_all(engine)
    engine.dispose()
    return url


def one_point(storage: str, url: str | None, workers: int, population: int,
              trials_per_member: int, trial_s: float, seed: int) -> dict[str, Any]:
    from pbtune.simulation import TOY, Surrogate, simulate, toy

    task = Surrogate("toy", functools.partial(toy, step_s=trial_s / STEPS_PER_TRIAL),
                     defaults=TOY.defaults, needs=TOY.needs)
    with tempfile.TemporaryDirectory(prefix="pbtune-scale-") as tmp:
        where = fresh_postgres(url) if storage == "postgresql" and url else \
            f"sqlite:///{tmp}/scale.db"
        result = simulate(task, workers=workers, storage=where, seed=seed,
                          population_size=population, steps_per_trial=STEPS_PER_TRIAL,
                          max_steps=STEPS_PER_TRIAL * trials_per_member)
    rate = result.decisions_per_real_s
    return {
        "storage": storage, "workers": workers, "population": population, "seed": seed,
        "trials": result.trials, "decisions": result.decisions, "real_s": result.real_s,
        "decisions_per_s": rate, "tell_ms_median": result.controller_ms_median,
        "tell_ms_p99": result.controller_ms_p99,
        "calls_per_decision": sum(result.storage_calls.values()) / max(1, result.decisions),
        "calls": result.storage_calls,
        "utilization": result.utilization, "virtual_wall_s": result.virtual_wall_s,
        "feeds_1min_workers": rate * 60.0, "lost": result.lost,
        "consistent": result.consistent,
    }


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"Command: `python benchmarks/scale.py --storages {args.storages} --workers "
        f"{args.workers} --populations {args.populations} --trials-per-member "
        f"{args.trials_per_member} --trial-s {args.trial_s:g} --seeds {args.seeds}`",
        "",
        "| storage | workers | population | trials | decisions/s | ask+tell median (ms) | "
        "ask+tell p99 (ms) | calls/decision | utilization | feeds workers of 1-min trials |"
        " lost | consistent |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['storage']} | {r['workers']:,} | {r['population']:,} | {r['trials']:,} | "
            f"{r['decisions_per_s']:.0f} | {r['tell_ms_median']:.2f} | {r['tell_ms_p99']:.2f} "
            f"| {r['calls_per_decision']:.2f} | {r['utilization']:.3f} | "
            f"{r['feeds_1min_workers']:,.0f} | {r['lost']} | {r['consistent']} |")
    pg = args.postgres if "postgresql" in args.storages else None
    lines += ["", common.env_line(common.environment(pg))]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storages", default="sqlite,postgresql")
    parser.add_argument("--workers", default="10,100,1000")
    parser.add_argument("--populations", default="8,100")
    parser.add_argument("--trials-per-member", type=int, default=20)
    parser.add_argument("--trial-s", type=float, default=60.0)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--name", default="scale")
    args = parser.parse_args()
    logging.getLogger("pbtune").setLevel(logging.ERROR)
    rows = []
    for storage in args.storages.split(","):
        for population in _ints(args.populations):
            for workers in _ints(args.workers):
                for seed in range(args.seeds):
                    row = one_point(storage, args.postgres, workers, population,
                                    args.trials_per_member, args.trial_s, seed)
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    text = markdown(rows, args)
    common.write_results(args.name, {"rows": rows}, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
