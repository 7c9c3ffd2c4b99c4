"""`pbtune delete`: remove a study, its trials and its checkpoints, for good."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from pbtune.checkpoints import open_store
from pbtune.cli._open import open_existing
from pbtune.cli._options import storage_option
from pbtune.controller import CHANGEABLE, SettingsConflictError
from pbtune.study import delete_study


def stdin_is_terminal() -> bool:
    """Whether someone can answer a question (the tests answer for a terminal)."""
    return sys.stdin.isatty()


@click.command()
@storage_option
@click.option("--study", "study_name", required=True, metavar="NAME",
              help="The study to delete (always named: nothing is deleted by default).")
@click.option("--yes", "-y", is_flag=True, help="Delete without asking.")
def delete(storage_url: str, study_name: str, yes: bool) -> None:
    """Delete a study: its trials, members and reports, and its checkpoint directory (or
    remote prefix). Other studies in the storage are not touched.

    On a terminal it asks first; --yes deletes without asking (a script must pass it).
    A study whose trials workers are running is not deleted: stop them first.
    """
    storage = open_existing(storage_url)
    record = storage.get_study(study_name)  # a clear error, naming the studies there are
    if not yes:
        if not stdin_is_terminal():
            raise click.UsageError(
                f"pbtune delete asks before it deletes, and stdin is not a terminal; pass "
                f"--yes to delete study {study_name!r}"
            )
        trials = sum(storage.count_states(record.id).values())
        location = open_store(str(record.config["checkpoint_root"]),
                              record.checkpoint_dir).location
        question = (f"Delete study {study_name!r} ({record.state.value}, {trials} trial(s)) "
                    f"and its checkpoints in {location}?")
        if not click.confirm(question, default=False, err=True):
            click.echo("Nothing was deleted.", err=True)
            raise click.exceptions.Exit(1)
    deleted = delete_study(study_name, storage=storage)
    click.echo(f"deleted study {deleted.name!r}: {deleted.trials} trial(s), and its "
               f"checkpoints in {deleted.checkpoints}")


def settings_conflict(error: SettingsConflictError, path: Path, name: str, url: str
                      ) -> SettingsConflictError:
    """``error`` in the words of `pbtune run` and `pbtune create` given the study file
    ``path``: on one line, with the commands that resolve it."""
    command = (f"pbtune delete --storage {shlex.quote(url)} --study {shlex.quote(name)} "
               "--yes")
    advice = (
        f"An existing study takes a changed max_steps (raised, or lowered to no less than "
        f"its trials reach) and changed {', '.join(CHANGEABLE)}; nothing else. To start "
        f"over with the settings of {path}, delete it ({command}; its trials and "
        "checkpoints go) and run this command again; to continue it as it was, put the "
        f"stored values back in {path}; or give the new study another name with --study NAME."
    )
    return SettingsConflictError(error.study, error.changes, advice, one_line=True)
