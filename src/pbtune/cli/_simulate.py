"""`pbtune simulate`: a study run by virtual workers on a virtual clock (`pbtune.simulation`)."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

import click

from pbtune._errors import ConfigError
from pbtune.cli._config import load_config
from pbtune.study import storage_text

TASK_HELP = (
    "The surrogate that stands in for training: toy (Jaderberg et al.'s quadratic; params "
    "h0, h1), nqm (the noisy quadratic model; params lr, batch_size), or FILE.py:FUNCTION, "
    "a function (params, state, start_step, end_step, rng) -> (state, metrics, seconds)."
)


def _outage(value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    start, sep, duration = value.partition(":")
    try:
        if not sep:
            raise ValueError
        return float(start), float(duration)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected START:DURATION in virtual seconds, "
                                 "e.g. 600:120") from None


@click.command()
@click.option("--config", "config_path", metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="YAML file of the study's settings (as for `pbtune run`); without it, "
                   "the task's own.")
@click.option("--task", default="toy", show_default=True, metavar="TASK", help=TASK_HELP)
@click.option("--workers", type=click.IntRange(min=1), default=10, show_default=True,
              help="Virtual workers.")
@click.option("--population-size", type=click.IntRange(min=2), help="Overrides the file's.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Overrides the file's.")
@click.option("--kill-fraction", type=click.FloatRange(0, 1), default=0.0,
              help="Fraction of workers killed once, mid-trial.")
@click.option("--silent-fraction", type=click.FloatRange(0, 1), default=0.0,
              help="Fraction of workers that hang once, mid-trial, past the heartbeat "
                   "timeout.")
@click.option("--outage", metavar="START:DURATION",
              help="Virtual seconds in which the storage answers nothing.")
@click.option("--restart-after", "restart_s", type=click.FloatRange(min=0), metavar="S",
              help="Replace a killed worker S virtual seconds later (default: never).")
@click.option("--spread", type=click.FloatRange(min=0), default=0.0,
              help="Members' speeds vary by a log-normal factor of this sigma.")
@click.option("--stragglers", type=click.FloatRange(0, 1), default=0.0,
              help="Fraction of trials that take 3x as long.")
@click.option("--storage", "storage_url", metavar="URL",
              help="Where the study is left (default: the file's storage, else memory).")
@click.option("--study", "study_name", metavar="NAME",
              help="The simulated study's name (default: a new one).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-virtual-s", type=click.FloatRange(min=0), metavar="S",
              help="Stop after S virtual seconds.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: the last line is one JSON object.")
def simulate(config_path: Path | None, task: str, population_size: int | None,
             max_steps: int | None, storage_url: str | None, study_name: str | None,
             fmt: str, outage: str | None, **options: Any) -> None:
    """Simulate a study: virtual workers run the real controller against the real
    storage on a virtual clock, a surrogate task stands in for training. Prints the
    virtual wall time, utilization, decisions per real second, the controller's time per
    ask+tell, the best fitness, the faults, and whether anything was lost; the study is
    left in --storage for `pbtune status` and `pbtune dashboard`."""
    from pbtune.simulation import simulate as run_simulation

    settings: dict[str, Any] = {}
    if config_path is not None:
        config = load_config(config_path)
        if config.command is not None:
            raise ConfigError(f"{config_path}: a simulation runs no command: the surrogate "
                              "--task stands in for it; remove 'command:' or use a copy")
        settings.update(config.options)
        storage_url = storage_url or config.storage
        study_name = study_name or (f"{config.name}-simulated" if config.name else None)
    if population_size is not None:
        settings["population_size"] = population_size
    if max_steps is not None:
        settings["max_steps"] = max_steps
    logger = logging.getLogger("pbtune")
    level = logger.level
    logger.setLevel(logging.ERROR)  # lost trials are expected here
    try:
        result = run_simulation(task, storage=storage_url, name=study_name,
                                outage=_outage(outage), **options, **settings)
    finally:
        logger.setLevel(level)  # a caller in the same process logs as before
    if fmt == "json":
        click.echo(result.to_json())
        return
    click.echo(str(result))
    if storage_url is not None:
        click.echo(f"next: pbtune status --storage {shlex.quote(storage_text(storage_url))} "
                   f"--study {shlex.quote(result.study)}")
