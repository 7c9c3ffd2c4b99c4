"""What a decision reads and collects, on every backend: the checkpoints it collects are
exactly those that nothing keeps (the database picks them in one statement;
tests/test_controller.py follows the rule on small lineages), and the population it reads
from trials it knew is the one stored, also after a checkpoint was found gone."""

from __future__ import annotations

import random
import time
from collections.abc import Set
from pathlib import Path

import pytest

from pbtune import Float, Storage, TrialState
from pbtune.checkpoints import CheckpointStore, Location, study_dir_name
from pbtune.controller import Claimed, Controller, StudyConfig, initial_trials
from pbtune.trial import FrozenTrial

WORKERS = 3
KEEP_BEST = 2


class Names(CheckpointStore):
    """Checkpoints that are names only; it remembers what it was asked to delete."""

    location: Location = "mem://study"

    def __init__(self) -> None:
        self.removed: list[Location] = []

    def stage(self, number: int, claim: str) -> Path:
        raise AssertionError("nothing is trained here")

    def final(self, number: int) -> Location:
        return f"mem://study/trial-{number}"

    def commit(self, staging: Path, number: int) -> Location:
        raise AssertionError("nothing is trained here")

    def open(self, reference: Location, trial_id: int) -> Path:
        raise AssertionError("nothing is trained here")

    def remove(self, reference: Location) -> None:
        self.removed.append(reference)

    def sweep(self, keep: Set[Location]) -> int:
        return 0


def needed(trials: list[FrozenTrial], latest: set[int], mode: str) -> set[int]:
    """What the rule keeps: each member's latest result, the parents of unfinished trials
    and the best ``KEEP_BEST`` of the trials holding a checkpoint (ties: lower number)."""
    holders = [t for t in trials if t.checkpoint is not None]
    sign = -1.0 if mode == "max" else 1.0
    best = sorted(holders, key=lambda t: (sign * (t.fitness or 0.0), t.id))[:KEEP_BEST]
    parents = {t.parent_id for t in trials if t.state.is_active and t.parent_id is not None}
    return latest | parents | {t.id for t in best}


def population_from(storage: Storage, study_id: int, known: dict[int, FrozenTrial]
                    ) -> list[FrozenTrial]:
    """The population as a decision reads it, knowing the trials ``known``."""
    return storage.write(study_id, lambda tx: tx.population(known))


def found_gone(storage: Storage, trial: FrozenTrial) -> bool:
    """Record ``trial``'s checkpoint as gone, as a worker that found it missing does."""
    assert trial.study_id is not None and trial.checkpoint is not None
    checkpoint = trial.checkpoint
    return storage.write(trial.study_id, lambda tx: tx.checkpoint_gone(trial.id, checkpoint))


@pytest.mark.parametrize("mode", ["max", "min"])
def test_decisions_collect_what_nothing_keeps_and_read_the_stored_population(
        storage: Storage, mode: str, tmp_path: Path) -> None:
    config = StudyConfig(space={"lr": Float(1e-4, 1.0, log=True)}, metric="acc", mode=mode,
                         population_size=5, steps_per_trial=1, max_steps=30,
                         keep_best=KEEP_BEST, max_retries=1, retry_delay=0,
                         checkpoint_root=str(tmp_path))
    record = storage.create_study("gc", config.to_dict(), study_dir_name("gc", "salt"),
                                  initial_trials(config), time.time())
    store = Names()
    controller = Controller(storage, record, config, store=store)
    rng = random.Random(f"garbage-{mode}")
    held: list[Claimed] = []
    decisions, gone = 0, set()
    known: list[dict[int, FrozenTrial]] = [{}]  # populations seen, oldest first
    while True:
        while len(held) < WORKERS and isinstance(asked := controller.claim("w"), Claimed):
            held.append(asked)
        if not held:
            break
        claimed = held.pop(rng.randrange(len(held)))
        if rng.random() < 0.15:  # a failure: retried from the same parent, or given up
            assert controller.tell_failure(claimed, "broken")
            continue
        told, following = controller.tell_and_ask(
            claimed, {"acc": rng.choice([0.1, 0.5, 0.9, rng.random()])},
            store.final(claimed.trial.number), "w")
        assert told
        held += [following] if following is not None else []
        decisions += 1
        trials = storage.get_trials(record.id)
        population = storage.get_population(record.id)
        holding = {t.id for t in trials if t.checkpoint is not None}
        assert holding == needed(trials, {t.id for t in population}, mode) - gone
        finished = {t.id for t in trials if t.state == TrialState.COMPLETE}
        assert set(map(str, store.removed)) == {
            str(store.final(i)) for i in finished - holding - gone}
        # Read from what was known a few decisions ago, the population is the stored one.
        assert population_from(storage, record.id, known[0]) == population
        known = [*known[-3:], {t.id: t for t in population}]
        if rng.random() < 0.2:  # another process finds a member's checkpoint gone
            lost = rng.choice([t for t in population if t.checkpoint is not None])
            assert found_gone(storage, lost)
            gone.add(lost.id)
    assert decisions > 50 and gone
