"""The simulator: virtual workers run the real controller and storage on a virtual clock.

What a simulation guarantees, whatever the order its events ran in: one worker's
simulation decides as a real run of the same study does; injected faults lose nothing;
the records it leaves are consistent; the audit finds records that are not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import pbtune
from conftest import drop_pbtune_tables, postgres_url
from pbtune import ConfigError, FrozenTrial, TrialState
from pbtune.cli import cli
from pbtune.simulation import NQM, TOY, VirtualClock, as_train, audit, nqm, simulate
from pbtune.space import SearchSpace

SMALL = {"population_size": 6, "max_steps": 60, "steps_per_trial": 4}
JSON_KEYS = {"trials", "decisions", "virtual_wall_s", "utilization", "decisions_per_real_s",
             "controller_ms_median", "controller_ms_p99", "best_fitness", "lost"}


def history(study: pbtune.Study) -> list[tuple[Any, ...]]:
    """Every trial as decided and trained, in the order of its id."""
    return [(t.id, t.member, t.parent_id, t.params, t.decision, t.start_step, t.end_step,
             t.metrics, t.state) for t in study.trials()]


def test_one_worker_simulation_decides_as_a_real_run(tmp_path: Path) -> None:
    settings = {**SMALL, "exploit": pbtune.Truncation(fraction=0.34)}
    result = simulate("toy", workers=1, storage=f"sqlite:///{tmp_path}/sim.db", name="sim",
                      seed=7, **settings)
    assert result.consistent and result.state == "COMPLETE"
    real = pbtune.create_study(
        name="real", storage=f"sqlite:///{tmp_path}/real.db", seed=7,
        checkpoint_root=str(tmp_path / "checkpoints"),
        **{**TOY.defaults, "space": SearchSpace.from_dict(TOY.defaults["space"]),
           **settings})
    real.optimize(as_train("toy"), workers=1, show_progress=False)
    simulated = pbtune.load_study("sim", storage=f"sqlite:///{tmp_path}/sim.db")
    assert len(simulated.trials()) == result.trials > SMALL["population_size"]
    assert any(t.decision == "exploit" for t in simulated.trials())
    assert history(simulated) == history(real)


@pytest.mark.parametrize("url", ["memory", "sqlite", "postgresql"])
def test_killed_and_silent_workers_and_an_outage_lose_nothing(url: str,
                                                              tmp_path: Path) -> None:
    storage = {"memory": None, "sqlite": f"sqlite:///{tmp_path}/s.db"}.get(url)
    if url == "postgresql":
        storage = postgres_url()
        drop_pbtune_tables(storage)
    result = simulate("nqm", workers=24, storage=storage, population_size=12, max_steps=600,
                      kill_fraction=0.25, silent_fraction=0.1, outage=(100.0, 150.0),
                      restart_s=30.0, seed=3)
    assert result.faults["killed"] >= 1 and result.faults["silent"] >= 1
    assert result.faults["lost_trials"] >= result.faults["killed"]  # each was reaped
    assert result.lost == 0 and result.unfinished == 0
    assert result.consistent, result.problems
    assert result.state == "COMPLETE"
    assert result.complete == result.decisions
    if storage is not None:
        study = pbtune.load_study(result.study, storage=storage)
        ends = {t.member: t.end_step for t in study.trials([TrialState.COMPLETE])}
        assert ends == dict.fromkeys(range(12), 600)  # every member reached max_steps


def test_a_silent_workers_late_result_is_refused_and_retried() -> None:
    result = simulate("toy", workers=4, population_size=4, max_steps=400, silent_fraction=1.0,
                      seed=1)
    assert result.faults["silent"] >= 1
    assert result.faults["refused"] >= 1  # told after its trial was reaped
    assert result.lost == 0 and result.consistent, result.problems


def test_simulated_study_is_left_for_status(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    runner = CliRunner()
    ran = runner.invoke(cli, ["simulate", "--workers", "8", "--population-size", "4",
                              "--storage", url, "--study", "sim", "--format", "json"])
    assert ran.exit_code == 0, ran.output
    figures = json.loads(ran.output.strip().splitlines()[-1])
    assert set(figures) >= JSON_KEYS
    assert figures["lost"] == 0 and figures["trials"] == figures["decisions"] > 4
    status = runner.invoke(cli, ["status", "--storage", url, "--study", "sim"])
    assert status.exit_code == 0 and "COMPLETE" in status.output


def test_cli_runs_a_study_file_and_a_task_of_ones_own(tmp_path: Path) -> None:
    (tmp_path / "task.py").write_text(
        "def climb(params, state, start_step, end_step, rng):\n"
        "    x = (state or 0.0) + params['rate'] * (end_step - start_step)\n"
        "    return x, {'x': x}, 2.0\n")
    (tmp_path / "study.yaml").write_text(
        "name: mine\nspace:\n  rate: {type: float, low: 0.0, high: 1.0}\n"
        "metric: x\nmode: max\npopulation_size: 4\nsteps_per_trial: 5\nmax_steps: 50\n")
    ran = CliRunner().invoke(cli, ["simulate", "--config", str(tmp_path / "study.yaml"),
                                   "--task", f"{tmp_path / 'task.py'}:climb",
                                   "--workers", "3", "--format", "json"])
    assert ran.exit_code == 0, ran.output
    figures = json.loads(ran.output.strip().splitlines()[-1])
    assert figures["study"] == "mine-simulated" and figures["consistent"]
    assert figures["state"] == "COMPLETE" and figures["complete"] >= 4 * 50 // 5 - 10
    assert 0.0 < figures["best_fitness"] <= 50.0  # rate <= 1 for 50 steps
    assert figures["virtual_wall_s"] >= 2.0 * 10  # ten 2 s trials a member at least


@pytest.mark.parametrize(("args", "says"), [
    (["--task", "nope"], "unknown surrogate task 'nope'"),
    (["--task", "nqm", "--config", "{toy}"], "lacks 'lr', 'batch_size'"),
    (["--outage", "10"], "expected START:DURATION"),
    (["--task", "missing.py:fn"], "'missing.py' not found"),
])
def test_cli_refuses_bad_input_in_one_line(args: list[str], says: str,
                                           tmp_path: Path) -> None:
    toy = tmp_path / "toy.yaml"
    toy.write_text("name: t\nspace:\n  h0: {type: float, low: 0, high: 1}\n"
                   "  h1: {type: float, low: 0, high: 1}\nmetric: q\nmode: max\n")
    ran = CliRunner().invoke(cli, ["simulate", *[a.format(toy=toy) for a in args]])
    assert ran.exit_code != 0
    assert says in ran.output and len(ran.output.strip().splitlines()) == 1


def test_a_task_must_return_state_metrics_and_seconds() -> None:
    with pytest.raises(ConfigError, match=r"returns \(state, metrics, seconds\)"):
        simulate(lambda *_: {"x": 1.0}, workers=1, space={"a": pbtune.Float(0, 1)},
                 metric="x", mode="max", population_size=2, max_steps=4, steps_per_trial=2)


def _trial(id: int, member: int, parent: int | None, start: int, end: int,
           state: TrialState = TrialState.COMPLETE) -> FrozenTrial:
    return FrozenTrial(id=id, member=member, generation=0, parent_id=parent, params={},
                       start_step=start, end_step=end, state=state)


def test_audit_finds_broken_lineages_and_lost_work() -> None:
    good = [_trial(1, 0, None, 0, 4), _trial(2, 1, None, 0, 4), _trial(3, 0, 1, 4, 8),
            _trial(4, 1, 1, 4, 8, TrialState.LOST), _trial(5, 1, 1, 4, 8)]
    assert audit(good, finished=True).consistent
    gap = [*good, _trial(6, 0, 3, 12, 16)]
    assert "starts at step 12, its parent 3 ended at 8" in audit(gap, finished=True).problems[0]
    unretried = [*good, _trial(6, 0, 3, 8, 12, TrialState.FAILED)]
    assert audit(unretried, finished=True).lost == 1
    held = [*good, _trial(6, 0, 3, 8, 12, TrialState.RUNNING)]
    assert not audit(held, finished=True).consistent
    assert audit(held, finished=False).consistent


def test_virtual_clock_never_goes_back() -> None:
    clock = VirtualClock(100.0)
    clock.advance(150.0)
    assert (clock.time(), clock.monotonic(), clock.stamp()) == (150.0, 150.0, 150.0)
    with pytest.raises(ValueError, match="never goes back"):
        clock.advance(149.0)


def test_noisy_quadratic_rewards_a_decaying_learning_rate() -> None:
    rng = np.random.default_rng(0)

    def train(schedule: list[tuple[float, int]], batch: int = 32) -> float:
        state, step = None, 0
        for lr, steps in schedule:
            state, metrics, _ = nqm({"lr": lr, "batch_size": batch}, state, step,
                                    step + steps, rng)
            step += steps
        return metrics["expected_loss"]

    constant = train([(1.0, 2000)])
    decayed = train([(1.0, 1500), (0.1, 500)])
    small = train([(0.1, 2000)])
    assert decayed < constant and decayed < small  # fast first, then below the noise floor
    assert train([(1.0, 2000)], batch=512) < constant  # a larger batch lowers the floor
    assert train([(2.5, 100)]) > 1e3  # above 2 / h_max it diverges, and stays finite
    assert NQM.needs == ("lr", "batch_size")


def test_a_name_taken_gets_advice_that_works(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    args = ["simulate", "--storage", url, "--study", "s", "--population-size", "2",
            "--max-steps", "8", "--workers", "2"]
    runner = CliRunner()
    assert runner.invoke(cli, args).exit_code == 0
    taken = runner.invoke(cli, args)
    assert taken.exit_code != 0 and "give it another name" in taken.output
    advice = taken.output.split("(pbtune ")[1].rstrip(")\n").split()
    assert runner.invoke(cli, advice).exit_code == 0  # pbtune delete ... --yes
    assert runner.invoke(cli, args).exit_code == 0
