"""The read-only commands: status, trials, best, schedule. They go through the storage
API only, so they work while a study runs and need none of its code."""

from __future__ import annotations

from pathlib import Path

import click
from rich.rule import Rule

from pbtune.cli import _format as fmt
from pbtune.cli._open import (
    best_trial,
    best_trials,
    failed_trials,
    open_existing,
    param_names,
    schedule,
    select_study,
)
from pbtune.cli._options import console, emit, storage_option, study_option
from pbtune.study import Scores, front, measure, schedule_csv, schedule_json
from pbtune.study import best_trial as study_best
from pbtune.trial import TrialState


@click.command()
@storage_option
@study_option
@click.option("--errors", is_flag=True, help="Also print the full stored text of each failure.")
def status(storage_url: str, study_name: str | None, errors: bool) -> None:
    """Progress, trial counts, best fitness and failures of each study."""
    storage = open_existing(storage_url)
    studies = [storage.get_study(study_name)] if study_name else storage.list_studies()
    out = console()
    if not studies:
        out.print(f"{storage!r} holds no study yet", markup=False)
        return
    for study in studies:
        best = study_best(storage, study)
        several = Scores.of(study.config).several
        out.print(fmt.study_table(study, measure(storage, study), best,
                                  front(storage, study) if several else ()))
        failed = failed_trials(storage, study)
        if not failed:
            continue
        out.print(fmt.failures_table(study, failed))
        if errors:
            for trial in failed:
                out.print(Rule(f"trial {trial.number} (member {trial.member}, steps "
                               f"{trial.start_step}-{trial.end_step})", align="left"))
                out.print(trial.error or "(no error text stored)", markup=False, soft_wrap=True)


@click.command()
@storage_option
@study_option
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([state.value for state in TrialState], case_sensitive=False),
    help="Only trials in this state (repeat for several).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Only the N most recent trials.")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "json", "csv"]), default="table",
    show_default=True,
)
def trials(
    storage_url: str, study_name: str | None, states: tuple[str, ...], limit: int | None,
    output_format: str,
) -> None:
    """The trials of a study, in the order they were created."""
    storage = open_existing(storage_url)
    study = select_study(storage, study_name)
    rows = storage.get_trials(study.id, [TrialState(s.upper()) for s in states] or None)
    if limit is not None:
        rows = rows[-limit:]
    scores = Scores.of(study.config)
    if output_format == "json":
        emit(fmt.to_json([fmt.trial_dict(t, scores) for t in rows]))
    elif output_format == "csv":
        emit(fmt.trials_csv(rows, param_names(study, [t.params for t in rows]), scores))
    else:
        console().print(fmt.trials_table(rows, title=f"trials of {study.name!r}",
                                         scores=scores))


@click.command()
@storage_option
@study_option
@click.option(
    "--format", "output_format", type=click.Choice(["text", "json", "csv"]), default="text",
    show_default=True,
)
def best(storage_url: str, study_name: str | None, output_format: str) -> None:
    """The COMPLETE trial with the best fitness; for a study of several objectives, the
    Pareto front of the members' final trials, a row each (JSON: a list)."""
    storage = open_existing(storage_url)
    study = select_study(storage, study_name)
    scores = Scores.of(study.config)
    if scores.several:
        trials = best_trials(storage, study)
        if output_format == "json":
            emit(fmt.to_json([fmt.trial_dict(t, scores) for t in trials]))
        elif output_format == "csv":
            emit(fmt.front_csv(trials, scores, param_names(study, [t.params for t in trials])))
        else:
            console().print(fmt.front_table(
                trials, scores, f"Pareto front of {study.name!r}: {len(trials)} trials"))
        return
    trial = best_trial(storage, study)
    if output_format == "json":
        emit(fmt.to_json(fmt.trial_dict(trial, scores if scores.constrained else None)))
    elif output_format == "csv":
        emit(fmt.front_csv([trial], scores, param_names(study, [trial.params])))
    else:
        console().print(fmt.trial_table(trial, title=f"best trial of {study.name!r}",
                                        scores=scores))


@click.command(name="schedule")
@storage_option
@study_option
@click.option("--trial", "trial_id", type=int, help="End of the lineage [default: best trial].")
@click.option(
    "--format", "output_format", type=click.Choice(["json", "csv"]), default="json",
    show_default=True,
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of stdout.",
)
def schedule_command(
    storage_url: str, study_name: str | None, trial_id: int | None, output_format: str,
    output: Path | None,
) -> None:
    """The hyperparameter schedule of the best (or a given) trial's lineage.

    JSON is a list of {start_step, end_step, params, trial_id}, the input of
    `pbtune replay --schedule`; CSV has one column per parameter.
    """
    storage = open_existing(storage_url)
    study = select_study(storage, study_name)
    segments = schedule(storage, study, trial_id)
    if output_format == "csv":
        names = param_names(study, [segment.params for segment in segments])
        text = schedule_csv(segments, names)
    else:
        text = schedule_json(segments)
    emit(text, output, what=f"a schedule of {len(segments)} segments")
