"""The commands that train: `pbtune run` (a study) and `pbtune replay` (a schedule)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from pbtune._errors import ConfigError, PbtuneError, SearchSpaceError
from pbtune._logging import DropSummary, ensure_default_handler, reported_interrupt
from pbtune.cli import _format as fmt
from pbtune.cli._config import RunConfig, load_config
from pbtune.cli._delete import settings_conflict
from pbtune.cli._open import open_existing, schedule, select_study
from pbtune.cli._options import (
    WORKERS_HELP,
    add_cwd_to_path,
    console,
    devices_options,
    emit,
    storage_option,
    study_option,
    timeout_option,
)
from pbtune.controller import SettingsConflictError
from pbtune.study import (
    DEFAULT_STORAGE,
    ReplayResult,
    Study,
    create_study,
    load_schedule,
    replay,
)
from pbtune.trial import Segment
from pbtune.worker import Command, Entry

ENTRY_HELP = "ENTRY is the training function: path/to/script.py:train or module:train."
EXIT_INTERRUPTED = 130  # a shell's code for a program that Ctrl-C ended


RUN_HELP = (
    "ENTRY is the training function: path/to/script.py:train or module:train. Or give "
    "--command 'python train.py' (or 'command:' in the study file) to run any program "
    "for each trial; see the README, 'Command trials'."
)


@click.command(epilog=RUN_HELP)
@click.argument("entry", required=False)
@click.option(
    "--config", "config_path", required=True, metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML file of the study's settings (create_study arguments).",
)
@click.option("--command", "command_line", metavar="TEXT",
              help="Run this program for each trial instead of a Python ENTRY.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help=WORKERS_HELP)
@devices_options
@click.option("--storage", "storage_url", metavar="URL", help="Overrides the file's storage.")
@click.option("--study", "study_name", metavar="NAME", help="Overrides the file's name.")
@click.option("--no-progress", is_flag=True, help="Do not show the live progress bar.")
@click.option("--retry-failed", is_flag=True,
              help="In a finished study, members that gave up after failures (a disk that "
                   "filled late) train on from their last good checkpoint.")
@timeout_option
def run(entry: str | None, config_path: Path, command_line: str | None, workers: int | None,
        devices: str | None, gpus_per_worker: int | None, storage_url: str | None,
        study_name: str | None, no_progress: bool, retry_failed: bool,
        timeout: float | None) -> None:
    """Run (or continue) the study described by --config until its budget is spent
    (or --timeout).

    Running the same command again after a crash, Ctrl-C or a timeout continues the study.
    """
    if entry is not None and command_line is not None:
        raise click.UsageError("give either ENTRY or --command, not both")
    settings = study_settings(config_path, storage_url, study_name)
    train = _training_function(entry, command_line, settings[0].command)
    loggers = settings[0].make_loggers()
    study = create_from_settings(*settings)
    with summary_printed_here():
        try:
            summary = study.optimize(train, workers=workers, devices=devices,
                                     gpus_per_worker=gpus_per_worker, timeout=timeout,
                                     show_progress=False if no_progress else None,
                                     callbacks=loggers, retry_failed=retry_failed)
        except KeyboardInterrupt as error:
            exit_interrupted(error)
    click.echo(str(summary))


@contextmanager
def summary_printed_here() -> Iterator[None]:
    """This command prints the run's summary on stdout: drop the copy that `optimize`
    logs (the per-trial lines still go to stderr)."""
    ensure_default_handler()
    logger, drop = logging.getLogger("pbtune.study"), DropSummary()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def exit_interrupted(error: KeyboardInterrupt) -> NoReturn:
    """End a command that Ctrl-C (or SIGTERM) stopped with exit code 130 and one line:
    the run logged it (how many trials were stopped, how to continue), else it is said
    here."""
    if not reported_interrupt(error):
        click.echo("Interrupted; run the same command again to continue.", err=True)
    raise click.exceptions.Exit(EXIT_INTERRUPTED)


def _training_function(entry: str | None, command_line: str | None,
                       file_command: str | list[str] | None) -> str | Command:
    """ENTRY, --command, or else the study file's ``command``; exactly one is used."""
    if entry is not None:
        add_cwd_to_path()
        load_entry(entry)
        return entry
    if command_line is None and file_command is None:
        raise click.UsageError(
            "give the training function as ENTRY (path/to/script.py:train), or a program "
            "to run for each trial with --command 'python train.py' (or 'command:' in the "
            "study file)"
        )
    line = command_line if command_line is not None else file_command
    assert line is not None
    try:
        return Command(line)
    except ValueError as error:  # shlex: "No closing quotation"
        raise click.UsageError(f"--command {line!r}: {error}") from None


def study_settings(config_path: Path, storage_url: str | None,
                   study_name: str | None) -> tuple[RunConfig, str, str]:
    """The parsed file, the study's name and its storage URL (the options win)."""
    config = load_config(config_path)
    name = study_name or config.name
    if name is None:
        raise ConfigError(f"{config_path}: name the study ('name: ...') or pass --study NAME")
    return config, name, storage_url or config.storage or DEFAULT_STORAGE


def create_from_settings(config: RunConfig, name: str, url: str) -> Study:
    try:
        return create_study(name, storage=url, load_if_exists=True, **config.options)
    except SettingsConflictError as error:
        raise settings_conflict(error, config.path, name, url) from None
    except (ConfigError, SearchSpaceError) as error:
        raise type(error)(f"{config.path}: {error}") from None


def load_entry(entry: str) -> Any:
    """Import the training function here first, so a typo is one clear error rather than
    a worker process dying again and again."""
    return Entry(entry).load()


@click.command(name="replay", epilog=ENTRY_HELP)
@click.argument("entry")
@click.option(
    "--schedule", "schedule_file", metavar="FILE.json",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A schedule written by `pbtune schedule --format json`.",
)
@storage_option
@study_option
@click.option("--trial", "trial_id", type=int,
              help="Replay this trial's lineage [default: best trial].")
@click.option(
    "--checkpoint-root", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
    help="Where the replay writes its checkpoints, kept [default: a temporary folder, "
         "deleted at the end].",
)
@click.option("--seed", type=int, default=None,
              help="trial.seed for the training function [default: the study's, or 0].")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.pass_context
def replay_command(
    ctx: click.Context, entry: str, schedule_file: Path | None, storage_url: str,
    study_name: str | None, trial_id: int | None, checkpoint_root: Path | None,
    seed: int | None, output_format: str,
) -> None:
    """Train one model from scratch on a schedule and print its final metrics.

    The schedule comes from --schedule FILE.json, or from a study's best (or --trial)
    lineage in --storage.
    """
    segments, study_seed = _replay_schedule(ctx, schedule_file, storage_url, study_name, trial_id)
    add_cwd_to_path()
    fn = load_entry(entry)
    # Without --checkpoint-root the checkpoints go to a temporary folder, deleted at the
    # end (also on an error or Ctrl-C): only the metrics are the result then.
    scratch = None if checkpoint_root is not None else Path(
        tempfile.mkdtemp(prefix="pbtune-replay-"))
    try:
        result = _replay(fn, segments, checkpoint_root or scratch,
                         seed if seed is not None else study_seed)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    kept = None if scratch is not None else str(result.checkpoint)
    if output_format == "json":
        emit(fmt.to_json({
            "metrics": result.metrics,
            "segment_metrics": result.segment_metrics,
            "checkpoint": kept,
        }))
        return
    out = console()
    out.print(fmt.schedule_table(segments, result.segment_metrics))
    out.print(f"final metrics: {fmt.params_text(result.metrics)}", markup=False)
    out.print(f"checkpoint: {kept or 'not kept (pass --checkpoint-root DIR to keep it)'}",
              markup=False)


def _replay(fn: Any, segments: list[Segment], root: Path | None, seed: int) -> ReplayResult:
    """`replay`, with an error of the user's function as one line."""
    try:
        return replay(fn, segments, checkpoint_root=root, seed=seed)
    except PbtuneError:
        raise
    except Exception as error:  # the user's training function raised
        frame = traceback.extract_tb(error.__traceback__)[-1]
        raise click.ClickException(
            f"replay: the training function raised {type(error).__name__}: {error} "
            f"({frame.filename}:{frame.lineno})"
        ) from None


def _replay_schedule(ctx: click.Context, schedule_file: Path | None, storage_url: str,
                     study_name: str | None, trial_id: int | None) -> tuple[list[Segment], int]:
    """The segments to replay and the seed of the study they came from (0 for a file)."""
    if schedule_file is None:
        storage = open_existing(storage_url)
        study = select_study(storage, study_name)
        return schedule(storage, study, trial_id), int(study.config.get("seed", 0))
    storage_given = ctx.get_parameter_source("storage_url") != ParameterSource.DEFAULT
    if storage_given or study_name is not None or trial_id is not None:
        raise click.UsageError(
            "give either --schedule FILE or --storage/--study/--trial, not both", ctx
        )
    return load_schedule(schedule_file), 0
