"""Helpers shared by the performance benchmarks (overhead, utilization, stragglers, scaling).

Ray is never imported here: only the benchmark scripts that compare with it import it.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/pbtune_bench"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _version(package: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:
        return None


def _postgres_version(url: str | None) -> str | None:
    if not url:
        return None
    try:
        import sqlalchemy

        from pbtune.storages._engine import normalize_url

        engine = sqlalchemy.create_engine(normalize_url(url))
        with engine.connect() as connection:
            text = connection.exec_driver_sql("SHOW server_version").scalar_one()
        engine.dispose()
        return str(text)
    except Exception:
        return None


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return None


def environment(postgres_url: str | None = None) -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pbtune": _version("pbtune"),
        "pbtune_commit": _commit(),
        "ray": _version("ray"),
        "sqlalchemy": _version("sqlalchemy"),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _postgres_version(postgres_url),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def tree_env(tree: Path) -> dict[str, str]:
    """The environment of a child that runs the pbtune of checkout ``tree`` (its src/ first
    on the path), for the benchmarks that put a ``--base`` checkout beside this one."""
    path = [str(tree / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(path)}


def commit_of(tree: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree,
                          capture_output=True, text=True)
    return done.stdout.strip() or "?"


def write_results(name: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``results/<name>.json`` and ``results/<name>.md``; return their paths."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / f"{name}.json"
    md_path = RESULTS / f"{name}.md"
    json_path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    md_path.write_text(markdown.rstrip() + "\n", encoding="utf-8")
    return json_path, md_path


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def env_line(env: dict[str, Any]) -> str:
    pg = f", PostgreSQL {env['postgresql']}" if env.get("postgresql") else ""
    return (f"Measured on {env['cpus']} CPUs, {env['memory_gib']} GiB, Python {env['python']}, "
            f"pbtune {env['pbtune']} ({env['pbtune_commit']}), Ray {env['ray']}, "
            f"SQLite {env['sqlite']}{pg}.")


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_json(args: Sequence[str], *, timeout: float = 900,
             env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python args...`` in a fresh interpreter; its last stdout line is JSON.

    The returned dict gets ``process_s``: the wall time of the whole child process,
    interpreter start and imports included.
    """
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args} exited with {done.returncode}:\n{done.stderr[-4000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{args} printed no JSON:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    result = json.loads(lines[-1])
    result["process_s"] = elapsed
    return result
