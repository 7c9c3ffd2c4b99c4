"""Options and output helpers that several commands share."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from pbtune.study import DEFAULT_STORAGE

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
