"""An mkdocs hook: the `pbtune` commands' `--help` texts, taken from the click commands at
build time, so the command-line page cannot drift from the code.

A line ``<!-- cli-help: run -->`` in a page becomes the help of ``pbtune run`` in a text
block (``<!-- cli-help: pbtune -->``: the top-level help). An unknown command fails the
build; a command of `pbtune` that the page with markers leaves out is a warning, which
``mkdocs build --strict`` turns into a failure.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

import click

# The checkout's own package first, wherever another pbtune is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from pbtune.cli import cli

_log = logging.getLogger("mkdocs.plugins.pbtune_cli_help")
MARKER = re.compile(r"^<!-- cli-help: ([a-z-]+) -->$", re.MULTILINE)
HELP_WIDTH = 88


def command_help(name: str) -> str:
    """The ``--help`` text of ``pbtune NAME`` (``pbtune``: the group's own)."""
    root = click.Context(cli, info_name="pbtune", terminal_width=HELP_WIDTH,
                         max_content_width=HELP_WIDTH)
    if name == "pbtune":
        return cli.get_help(root)
    command = cli.get_command(root, name)
    if command is None:
        raise click.UsageError(f"cli-help marker names {name!r}, which is no pbtune command")
    context = click.Context(command, info_name=name, parent=root,
                            terminal_width=HELP_WIDTH, max_content_width=HELP_WIDTH)
    return command.get_help(context)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace each marker with its command's help, and check that none is left out."""
    names = MARKER.findall(markdown)
    if not names:
        return markdown
    missing = sorted(set(cli.list_commands(click.Context(cli))) - set(names))
    if missing:
        _log.warning("%s documents no help for: pbtune %s", page.file.src_path,
                     ", ".join(missing))
    return MARKER.sub(lambda match: f"```text\n{command_help(match.group(1))}\n```", markdown)
