"""The `pbtune` command group and its error handling: every error is one line on stderr
and a non-zero exit code, never a traceback. An error pbtune did not foresee (a bug) says
so in its line; ``PBTUNE_DEBUG=1`` shows the full traceback of any error instead."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click

from pbtune._errors import PbtuneError
from pbtune._version import __version__
from pbtune.cli._cluster import create, worker
from pbtune.cli._dashboard import dashboard, plot
from pbtune.cli._delete import delete
from pbtune.cli._read import best, schedule_command, status, trials
from pbtune.cli._run import replay_command, run
from pbtune.cli._simulate import simulate

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEBUG_ENV = "PBTUNE_DEBUG"


def _fail(message: str, code: int) -> NoReturn:
    one_line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    click.echo(f"Error: {one_line}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """A group whose `main` turns errors into one line; the tests' CliRunner uses it too."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        debug = os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as error:
            if type(error).__name__ == "NoArgsIsHelpError":  # `pbtune` alone: the help
                click.echo(error.format_message())
                sys.exit(0)
            hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
            _fail(error.format_message() + hint, EXIT_USAGE)
        except click.ClickException as error:
            _fail(error.format_message(), error.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("Interrupted.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # `pbtune trials | head`
            sys.exit(EXIT_ERROR)
        except Exception as error:
            if debug:
                raise
            _fail(_describe(error), EXIT_ERROR)
        sys.exit(code if isinstance(code, int) else 0)


def _describe(error: Exception) -> str:
    """The line for an error: a pbtune error's or an OS error's own message (a file that
    cannot be read or written); for anything else, its type too, as it is a bug."""
    if isinstance(error, PbtuneError):
        return str(error) or type(error).__name__
    if isinstance(error, OSError):
        return str(error) or type(error).__name__
    return (f"unexpected {type(error).__module__}.{type(error).__name__}: {error} (a bug in "
            f"pbtune or in code it ran; {DEBUG_ENV}=1 shows the traceback: please report it)")


@click.group(cls=_Group, no_args_is_help=True)
@click.version_option(__version__, prog_name="pbtune")
def cli() -> None:
    """pbtune: asynchronous Population Based Training.

    Run a study from a YAML file with `pbtune run`, then read it with `status`,
    `trials`, `best` and `schedule`, see it with `dashboard` or `plot`, and retrain the
    winning schedule with `replay`. On a cluster, `create` the study and start
    `pbtune worker`s that join it. `delete` removes a study and its checkpoints.
    `simulate` runs a study with virtual workers on a virtual clock.
    """


for command in (run, create, worker, status, trials, best, schedule_command, replay_command,
                dashboard, plot, delete, simulate):
    cli.add_command(command)


def main() -> None:
    """The `pbtune` console script."""
    cli.main(prog_name="pbtune")
