"""Commands for running a study on many machines: `pbtune create` makes the study,
`pbtune worker` (started by SLURM, Kubernetes, or by hand) joins it and runs trials."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import click

from pbtune.cli._open import open_existing
from pbtune.cli._options import WORKERS_HELP, add_cwd_to_path, devices_options, timeout_option
from pbtune.cli._run import (
    ENTRY_HELP,
    create_from_settings,
    exit_interrupted,
    load_entry,
    study_settings,
)
from pbtune.controller import Role
from pbtune.loggers import Logger
from pbtune.storages import Storage, StudyState, sqlite_file
from pbtune.study import load_study, storage_text, summarize
from pbtune.worker import WORKER_APPLICATION


@click.command()
@click.option(
    "--config", "config_path", required=True, metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML file of the study's settings (as for `pbtune run`).",
)
@click.option("--storage", "storage_url", metavar="URL", help="Overrides the file's storage.")
@click.option("--study", "study_name", metavar="NAME", help="Overrides the file's name.")
def create(config_path: Path, storage_url: str | None, study_name: str | None) -> None:
    """Create the study described by --config without running it, for `pbtune worker`s
    to join. Creating a study that exists with the same settings does nothing."""
    config, name, url = study_settings(config_path, storage_url, study_name)
    existed = _exists(url, name)
    study = create_from_settings(config, name, url)
    where = f"--storage {shlex.quote(storage_text(url))} --study {shlex.quote(study.name)}"
    did = "exists with the same settings" if existed else "created"
    lines = [
        f"study {study.name!r} {did} in {storage_text(url)}",
        "next, on any machine that reaches the storage and the checkpoint_root "
        f"({study.config.checkpoint_root}):",
        f"  pbtune worker {where} --entry path/to/script.py:train",
        f"or run it here: pbtune run path/to/script.py:train --config "
        f"{shlex.quote(str(config_path))} {where}",
    ]
    if config.command is not None:  # a command study runs with `pbtune run` only
        lines[2:] = [f"  pbtune run --config {shlex.quote(str(config_path))} {where}"]
    click.echo("\n".join(lines))


def _exists(url: str, name: str) -> bool:
    """Whether ``url`` holds a study called ``name`` (a SQLite file not there yet holds
    none, and is not made here)."""
    database = sqlite_file(url)
    if database is not None and not Path(database).exists():
        return False
    storage = Storage(url)
    try:
        return any(study.name == name for study in storage.list_studies())
    finally:
        storage.dispose()


@click.command(epilog=ENTRY_HELP.replace("ENTRY", "--entry"))
@click.option("--storage", "storage_url", metavar="URL",
              help="Database of the study: postgresql://user@host/db or sqlite:///file.db "
                   "[default: the --config file's].")
@click.option("--study", "study_name", metavar="NAME",
              help="Study to join [default: the --config file's name].")
@click.option(
    "--config", "config_path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
    help="The study file: its storage and name (unless given) and its loggers, which log "
         "the trials this worker runs.",
)
@click.option("--entry", metavar="FILE.py:NAME|MODULE:NAME",
              help="The training function (not needed with --role evaluate).")
@click.option("--max-trials", type=click.IntRange(min=1), default=None, metavar="K",
              help="Stop after K trials (per worker process) [default: when the study is done].")
@click.option("--workers", type=click.IntRange(min=1), default=None, help=WORKERS_HELP)
@devices_options
@click.option("--role", type=click.Choice(["both", "train", "evaluate"]), default="both",
              show_default=True,
              help="In a study with an evaluate function: evaluate and train, only train, or "
                   "only evaluate (an evaluator on its own resources).")
@timeout_option
def worker(storage_url: str | None, study_name: str | None, config_path: Path | None,
           entry: str | None, max_trials: int | None, workers: int | None,
           devices: str | None, gpus_per_worker: int | None, role: Role,
           timeout: float | None) -> None:
    """Join a study and run its trials until it is done (or --max-trials are run, or
    --timeout passes: this machine's running trials go back in the queue).

    Start as many as you like, on any machine that reaches the storage and the study's
    checkpoint_root; the study is created first with `pbtune create`.
    """
    config = None
    if config_path is not None:
        config, study_name, storage_url = study_settings(config_path, storage_url, study_name)
    elif storage_url is None or study_name is None:
        raise click.UsageError("give --storage URL and --study NAME, or --config FILE (the "
                               "study file, as for `pbtune create`)")
    storage = open_existing(storage_url, application_name=WORKER_APPLICATION)
    study = load_study(study_name, storage=storage)
    loggers: list[Logger] = config.make_loggers() if config is not None else []
    if role == "evaluate" and not study.config.evaluated:
        raise click.UsageError(f"study {study_name!r} has no evaluate function to run")
    if entry is None and role != "evaluate":
        raise click.UsageError("give the training function with --entry FILE.py:NAME")
    add_cwd_to_path()
    if entry is not None:
        load_entry(entry)
    started = time.monotonic()
    try:
        done = study.join(entry, workers=workers, max_trials=max_trials, role=role,
                          devices=devices, gpus_per_worker=gpus_per_worker, timeout=timeout,
                          callbacks=loggers)
    except KeyboardInterrupt as error:
        exit_interrupted(error)
    state = study.state
    ran = "" if done is None else f"ran {done} trial(s); "
    click.echo(f"{ran}study {study_name!r} is {state.value}", err=True)
    if state == StudyState.COMPLETE:
        record = storage.get_study(study_name)
        click.echo(str(summarize(storage, record, time.monotonic() - started)))
    if state == StudyState.FAILED:
        raise click.ClickException(f"study {study_name!r} failed: {study.error}")
