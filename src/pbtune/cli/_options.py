"""Options and output helpers that several commands share."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from pbtune._errors import ConfigError
from pbtune.study import DEFAULT_STORAGE
from pbtune.worker import check_timeout

F = TypeVar("F", bound=Callable[..., Any])


def storage_option(fn: F) -> F:
    return click.option(
        "--storage",
        "storage_url",
        default=DEFAULT_STORAGE,
        show_default=True,
        metavar="URL",
        help="Database of the study: sqlite:///file.db or postgresql://user@host/db.",
    )(fn)


def study_option(fn: F) -> F:
    return click.option(
        "--study",
        "study_name",
        default=None,
        metavar="NAME",
        help="Study name; may be left out when the storage holds exactly one study.",
    )(fn)


def timeout_option(fn: F) -> F:
    return click.option(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        callback=_positive_seconds,
        help="Stop after SECONDS of wall clock: the running trials go back in the queue "
             "unchanged, and the same command continues the study [default: no limit].",
    )(fn)


def _positive_seconds(_ctx: click.Context, _param: click.Parameter,
                      value: float | None) -> float | None:
    try:
        return check_timeout(value)
    except ConfigError:
        raise click.BadParameter(
            f"{value!r}: give a positive, finite number of seconds, e.g. --timeout 3600 "
            "(leave it out for no limit)"
        ) from None


def devices_options(fn: F) -> F:
    """``--devices`` and ``--gpus-per-worker``: the GPUs of the worker processes, as
    `Study.optimize` takes them."""
    fn = click.option(
        "--gpus-per-worker", type=click.IntRange(min=1), default=None, metavar="K",
        help="GPUs of --devices each worker process gets, disjoint [default: 1].",
    )(fn)
    return click.option(
        "--devices", default=None, metavar="0,1,2,3|auto",
        help="GPUs for the worker processes, each its own through CUDA_VISIBLE_DEVICES: "
             "indices or GPU-/MIG- UUIDs, or 'auto' (this machine's; none found: no "
             "assignment). More workers than devices share them round-robin.",
    )(fn)


WORKERS_HELP = ("Worker processes on this machine [default: one per --devices group, "
                "else 1].")


# Piped or captured output is read by programs and wide windows, not an 80-column tty.
PIPED_WIDTH = 160


def console() -> Console:
    """A console on the current stdout (tests swap it), without guessing at highlights."""
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, width=PIPED_WIDTH if wide else None)


def emit(text: str, output: Path | None = None, *, what: str = "output") -> None:
    """Write ``text`` to ``output``, or to stdout when there is none."""
    if not text.endswith("\n"):
        text += "\n"
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {what} to {output}", err=True)


def add_cwd_to_path() -> None:
    """Let ``module:train`` name a module in the current folder, as ``python -m`` would;
    spawned worker processes inherit this path."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
