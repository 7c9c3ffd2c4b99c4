"""The `pbtune` command group and its error handling: every error a user can cause is
one line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

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

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _fail(message: str, code: int) -> NoReturn:
    one_line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    click.echo(f"Error: {one_line}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """A group whose `main` turns errors into one line; the tests' CliRunner uses it too."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
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
        except PbtuneError as error:
            _fail(str(error) or type(error).__name__, EXIT_ERROR)
        except BrokenPipeError:  # `pbtune trials | head`
            sys.exit(EXIT_ERROR)
        except OSError as error:  # a file that cannot be read or written
            _fail(str(error), EXIT_ERROR)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Group, no_args_is_help=True)
@click.version_option(__version__, prog_name="pbtune")
def cli() -> None:
    """pbtune: asynchronous Population Based Training.

    Run a study from a YAML file with `pbtune run`, then read it with `status`,
    `trials`, `best` and `schedule`, see it with `dashboard` or `plot`, and retrain the
    winning schedule with `replay`. On a cluster, `create` the study and start
    `pbtune worker`s that join it. `delete` removes a study and its checkpoints.
    """


for command in (run, create, worker, status, trials, best, schedule_command, replay_command,
                dashboard, plot, delete):
    cli.add_command(command)


def main() -> None:
    """The `pbtune` console script."""
    cli.main(prog_name="pbtune")
