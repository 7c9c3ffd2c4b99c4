"""A study's life: settings changed on an existing study (a raised budget among them),
deleting a study, and the Python API's conveniences (best_params, best_value,
trials_dataframe)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

import pbtune
from pbtune import ConfigError, SettingsConflictError, StudyInUseError, TrialState
from pbtune.controller import SettingChange, compare_settings
from pbtune.storages import MemberState, StudyState
from pbtune.storages._schema import trials as trials_table

SPACE = {"lr": pbtune.Float(0.01, 1.0, log=True), "width": pbtune.Choice([16, 32, 64])}


def train(trial: pbtune.Trial) -> dict[str, float]:
    """Score = the sum of lr over the steps trained, carried in the checkpoint; a first
    trial must start at step 0 and a warm start where its parent ended."""
    score, step = 0.0, 0
    if trial.parent_checkpoint is not None:
        state = json.loads((trial.parent_checkpoint / "state.json").read_text())
        score, step = state["score"], state["step"]
    assert step == trial.start_step, (step, trial.start_step)
    score += trial.params["lr"] * (trial.end_step - trial.start_step)
    (trial.checkpoint_dir / "state.json").write_text(
        json.dumps({"score": score, "step": trial.end_step}))
    return {"score": score, "half": score / 2}


def fails_for_member_1(trial: pbtune.Trial) -> dict[str, float]:
    if trial.member == 1:
        raise RuntimeError("member 1's code is broken")
    return train(trial)


def settings(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    chosen: dict[str, Any] = dict(
        storage=f"sqlite:///{tmp_path / 'studies.db'}", space=SPACE, metric="score",
        population_size=3, steps_per_trial=4, max_steps=12, seed=3,
        checkpoint_root=tmp_path / "ckpt",
    )
    chosen.update(overrides)
    return chosen


def run(study: pbtune.Study, fn: Any = train) -> None:
    study.optimize(fn, workers=1, backend="thread", show_progress=False)


def assert_unbroken(lineage: list[pbtune.FrozenTrial]) -> None:
    """A lineage from step 0, each trial warm-started where its parent ended."""
    assert lineage[0].start_step == 0 and lineage[0].parent_id is None
    for parent, child in itertools.pairwise(lineage):
        assert child.parent_id == parent.id
        assert child.start_step == parent.end_step
        assert parent.state == TrialState.COMPLETE


# -- the differences, in words ------------------------------------------------------------


def test_differences_name_each_setting_with_its_stored_and_given_value() -> None:
    stored = {"metric": "score", "max_steps": 12, "trial_timeout": None,
              "space": {"lr": {"type": "float", "low": 0.01, "high": 1.0},
                        "width": {"type": "choice", "choices": [16, 32]}}}
    given = {"metric": "loss", "max_steps": 12,
             "space": {"lr": {"type": "int", "low": 1, "high": 5},
                       "depth": {"type": "int", "low": 1, "high": 4}},
             "evaluate": "score.py:score"}
    changes = [str(c) for c in compare_settings(stored, given)]
    assert changes == [
        "metric: 'score' -> 'loss'",
        "space.lr: {type: 'float', low: 0.01, high: 1.0} -> {type: 'int', low: 1, high: 5}",
        "space.width: {type: 'choice', choices: [16, 32]} -> (none)",
        "space.depth: (none) -> {type: 'int', low: 1, high: 4}",
        "evaluate: (none) -> 'score.py:score'",
    ]  # trial_timeout None and absent are the same: no timeout
    narrowed = {**given["space"], "depth": {"type": "int", "low": 2, "high": 4, "log": True}}
    changes = [str(c) for c in compare_settings(given, {**given, "space": narrowed})]
    assert changes == ["space.depth.low: 1 -> 2", "space.depth.log: (none) -> True"]


def test_a_conflict_reads_one_change_a_line_or_all_on_one_line() -> None:
    changes = [SettingChange("metric", "score", "loss"),
               SettingChange("max_steps", 12, 4, "its trials train to step 12 already")]
    lines = str(SettingsConflictError("s", changes, "Do this.")).splitlines()
    assert lines == ["study 's' exists with other settings:", "  metric: 'score' -> 'loss'",
                     "  max_steps: 12 -> 4 (its trials train to step 12 already)", "Do this."]
    one = str(SettingsConflictError("s", changes, "Do this.", one_line=True))
    assert one == ("study 's' exists with other settings: metric: 'score' -> 'loss'; "
                   "max_steps: 12 -> 4 (its trials train to step 12 already). Do this.")


# -- a raised budget ------------------------------------------------------------------------


def test_extend_a_complete_study_trains_every_member_on_from_its_latest_checkpoint(
    tmp_path: Path,
) -> None:
    study = pbtune.create_study("grow", **settings(tmp_path))
    run(study)
    assert study.state == StudyState.COMPLETE
    before = {t.id: t for t in study.trials()}
    latest = {t.member: t for t in study.storage.get_population(study.id)}
    assert all(t.end_step == 12 and t.checkpoint is not None and Path(t.checkpoint).is_dir()
               for t in latest.values())

    study.extend(max_steps=22)
    assert study.state == StudyState.RUNNING and study.config.max_steps == 22
    assert all(m.state == MemberState.ACTIVE for m in study.storage.get_members(study.id))
    queued = study.trials([TrialState.QUEUED])
    assert sorted(t.member for t in queued) == [0, 1, 2]
    for t in queued:  # decided as any finished trial is: from a latest trial, at step 12
        assert t.decision in ("continue", "exploit", "explore")
        assert t.parent_id in {p.id for p in latest.values()}
        assert (t.start_step, t.end_step) == (12, 16)

    run(study)
    assert study.state == StudyState.COMPLETE
    best = study.best_trial
    assert best.end_step == 22
    lineage = study.lineage(best.id)
    assert_unbroken(lineage)
    assert [t.end_step for t in lineage] == [4, 8, 12, 16, 20, 22]
    after = {t.id: t for t in study.trials() if t.id in before}
    assert {i: replace(t, checkpoint=None) for i, t in after.items()} == {
        i: replace(t, checkpoint=None) for i, t in before.items()}  # the history stays
    for member in range(3):
        assert max(t.end_step for t in study.trials() if t.member == member) == 22


def test_create_study_with_a_higher_max_steps_extends_and_takes_safe_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    run(pbtune.create_study("grow", **settings(tmp_path)))
    again = pbtune.create_study("grow", **settings(
        tmp_path, max_steps=16, keep_best=1, max_retries=5, heartbeat_timeout=7.5,
        trial_timeout=300.0), load_if_exists=True)
    stored = again.storage.get_study("grow").config
    assert (stored["max_steps"], stored["keep_best"], stored["max_retries"]) == (16, 1, 5)
    assert (stored["heartbeat_timeout"], stored["trial_timeout"]) == (7.5, 300.0)
    assert again.config.max_steps == 16 and again.state == StudyState.RUNNING
    assert "max_steps: 12 -> 16" in caplog.text and "keep_best: 3 -> 1" in caplog.text
    run(again)
    assert again.best_trial.end_step == 16
    assert_unbroken(again.lineage())


def test_workers_with_the_old_settings_follow_a_budget_raised_elsewhere(tmp_path: Path) -> None:
    stale = pbtune.create_study("grow", **settings(tmp_path))
    pbtune.load_study("grow", storage=settings(tmp_path)["storage"]).extend(max_steps=20)
    assert stale.config.max_steps == 12  # this handle never read the new budget
    run(stale)  # its controller decides from the stored budget
    assert stale.best_trial.end_step == 20
    assert all(max(t.end_step for t in stale.trials() if t.member == m) == 20
               for m in range(3))


def test_a_raised_budget_lengthens_queued_trials_the_old_one_cut_short(tmp_path: Path) -> None:
    study = pbtune.create_study("grow", **settings(tmp_path, max_steps=10, population_size=2))
    assert study.join(train, max_trials=4) == 4
    queued = study.trials([TrialState.QUEUED])
    assert any(t.end_step == 10 and t.start_step == 8 for t in queued)  # cut short
    study.extend(max_steps=30)
    assert {t.id: (t.start_step, t.end_step) for t in study.trials([TrialState.QUEUED])} == {
        t.id: (t.start_step, t.start_step + 4 if t.end_step == 10 else t.end_step)
        for t in queued}
    run(study)
    assert study.best_trial.end_step == 30
    assert_unbroken(study.lineage())


def test_members_that_gave_up_stay_stopped(tmp_path: Path) -> None:
    study = pbtune.create_study("grow", **settings(tmp_path, max_retries=0))
    run(study, fails_for_member_1)
    study.extend(max_steps=16)
    states = {m.member: m.state for m in study.storage.get_members(study.id)}
    assert states == {0: MemberState.ACTIVE, 1: MemberState.FAILED, 2: MemberState.ACTIVE}
    run(study, fails_for_member_1)
    assert {t.member for t in study.trials() if t.end_step > 12} == {0, 2}


def test_extend_refuses_what_is_not_a_raise(tmp_path: Path) -> None:
    study = pbtune.create_study("grow", **settings(tmp_path))
    with pytest.raises(ConfigError, match=r"extend\(max_steps=8\) would lower the budget of "
                                          r"study 'grow' \(12\); extend only raises it"):
        study.extend(max_steps=8)
    with pytest.raises(ConfigError, match="max_steps must be an int, got '20'"):
        study.extend(max_steps="20")  # type: ignore[arg-type]
    study.extend(max_steps=12)  # the same budget: nothing changes
    assert study.storage.get_study("grow").config["max_steps"] == 12


# -- refused changes --------------------------------------------------------------------------


def test_a_refused_change_shows_old_and_new_values_and_changes_nothing(tmp_path: Path) -> None:
    run(pbtune.create_study("grow", **settings(tmp_path)))
    stored = pbtune.load_study("grow", storage=settings(tmp_path)["storage"])
    before = (stored.storage.get_study("grow"), stored.trials())
    given = settings(tmp_path, metric="half", steps_per_trial=2, max_steps=30, keep_best=1,
                     space={**SPACE, "lr": pbtune.Float(0.01, 0.5, log=True)})
    with pytest.raises(SettingsConflictError) as raised:
        pbtune.create_study("grow", load_if_exists=True, **given)
    error = raised.value
    assert [str(c) for c in error.changes] == [
        "space.lr.high: 1.0 -> 0.5",
        "metric: 'score' -> 'half'",
        "steps_per_trial: 4 -> 2",
    ]
    text = str(error)
    url = settings(tmp_path)["storage"]
    assert "  metric: 'score' -> 'half'" in text.splitlines()
    assert f"pbtune.delete_study(name='grow', storage={url!r})" in text
    assert f"pbtune.load_study('grow', storage={url!r})" in text
    # nothing was taken: not the raised budget, not keep_best
    assert (stored.storage.get_study("grow"), stored.trials()) == before


def test_max_steps_can_go_no_lower_than_the_trials_reach(tmp_path: Path) -> None:
    study = pbtune.create_study("grow", **settings(tmp_path))
    assert study.join(train, max_trials=3) == 3  # every member trained 0-4; 4-8 queued
    with pytest.raises(SettingsConflictError,
                       match=r"max_steps: 12 -> 6 \(its trials train to step 8 already: "
                             r"max_steps can go no lower than 8\)"):
        pbtune.create_study("grow", load_if_exists=True, **settings(tmp_path, max_steps=6))
    lowered = pbtune.create_study("grow", load_if_exists=True, **settings(tmp_path, max_steps=8))
    run(lowered)
    assert lowered.state == StudyState.COMPLETE
    assert max(t.end_step for t in lowered.trials()) == 8


def test_the_follow_up_advice_works(tmp_path: Path) -> None:
    run(pbtune.create_study("grow", **settings(tmp_path)))
    url = settings(tmp_path)["storage"]
    with pytest.raises(SettingsConflictError):
        pbtune.create_study("grow", load_if_exists=True, **settings(tmp_path, metric="half"))
    assert pbtune.load_study("grow", storage=url).config.metric == "score"  # as it was
    pbtune.delete_study(name="grow", storage=url)  # or start over
    fresh = pbtune.create_study("grow", load_if_exists=True, **settings(tmp_path, metric="half"))
    assert fresh.config.metric == "half" and len(fresh.trials()) == 3


# -- deleting ---------------------------------------------------------------------------------


def test_delete_removes_one_study_and_its_checkpoints_and_nothing_else(tmp_path: Path) -> None:
    doomed = pbtune.create_study("doomed", **settings(tmp_path))
    kept = pbtune.create_study("kept", **settings(tmp_path))
    run(doomed)
    run(kept)
    kept_rows = (kept.storage.get_study("kept"), kept.trials(),
                 kept.storage.get_members(kept.id))
    kept_files = sorted(p.name for p in Path(kept.checkpoint_dir).iterdir())
    assert kept_files and Path(doomed.checkpoint_dir).is_dir()

    deleted = pbtune.delete_study(name="doomed", storage=settings(tmp_path)["storage"])
    assert (deleted.name, deleted.trials, deleted.checkpoints) == (
        "doomed", 9, doomed.checkpoint_dir)
    assert not Path(doomed.checkpoint_dir).exists()
    assert [s.name for s in kept.storage.list_studies()] == ["kept"]
    assert doomed.storage.get_trials(doomed.id) == []
    assert doomed.storage.get_members(doomed.id) == []
    assert (kept.storage.get_study("kept"), kept.trials(),
            kept.storage.get_members(kept.id)) == kept_rows
    assert sorted(p.name for p in Path(kept.checkpoint_dir).iterdir()) == kept_files
    assert kept.best_trial.end_step == 12


def test_deleting_a_study_that_does_not_exist_names_those_that_do(tmp_path: Path) -> None:
    pbtune.create_study("real", **settings(tmp_path))
    with pytest.raises(pbtune.StudyNotFoundError,
                       match=r"no study named 'typo' in .*; studies here: 'real'"):
        pbtune.delete_study(name="typo", storage=settings(tmp_path)["storage"])
    missing = tmp_path / "nowhere.db"
    with pytest.raises(pbtune.StudyNotFoundError, match="there is no database file"):
        pbtune.delete_study(name="real", storage=f"sqlite:///{missing}")
    assert not missing.exists()  # asking did not create it


def test_a_study_whose_workers_beat_is_not_deleted(tmp_path: Path) -> None:
    study = pbtune.create_study("busy", **settings(tmp_path, heartbeat_timeout=600.0))
    url = settings(tmp_path)["storage"]
    controller = pbtune.controller.Controller(
        study.storage, study.storage.get_study("busy"), study.config)
    claimed = controller.ask("host:1:worker")
    assert isinstance(claimed, pbtune.controller.Claimed)
    with pytest.raises(StudyInUseError, match=r"study 'busy' is in use: workers hold 1 of "
                                              r"its trials .* trial 0 by host:1:worker"):
        pbtune.delete_study(name="busy", storage=url)
    assert study.storage.get_study("busy").id == study.id  # untouched
    # A worker killed outright stops beating: once its heartbeat is older than the
    # timeout, its trial holds nothing up.
    old = time.time() - 601.0
    study.storage.write(study.id, lambda tx: tx._c.execute(
        update(trials_table).where(trials_table.c.study_id == study.id,
                                   trials_table.c.number == claimed.trial.id)
        .values(heartbeat_at=old)))
    pbtune.delete_study(name="busy", storage=url)
    assert [s.name for s in study.storage.list_studies()] == []


def test_delete_removes_a_remote_prefix_and_nothing_beside_it(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec", reason="pip install -e '.[dev]' (fsspec)")
    root = f"memory://pbtune-lifecycle-{uuid.uuid4().hex[:8]}"
    doomed = pbtune.create_study("doomed", **settings(tmp_path, checkpoint_root=root))
    kept = pbtune.create_study("kept", **settings(tmp_path, checkpoint_root=root))
    run(doomed)
    run(kept)
    fs = fsspec.filesystem("memory")
    assert fs.exists(str(doomed.checkpoint_dir))
    kept_files = sorted(fs.find(str(kept.checkpoint_dir)))
    pbtune.delete_study(name="doomed", storage=settings(tmp_path)["storage"])
    fs.invalidate_cache()
    assert not fs.exists(str(doomed.checkpoint_dir))
    assert sorted(fs.find(str(kept.checkpoint_dir))) == kept_files


# -- best_params, best_value, trials_dataframe ------------------------------------------------


def test_best_params_and_value_are_the_best_trials(tmp_path: Path) -> None:
    study = pbtune.create_study("s", **settings(tmp_path))
    with pytest.raises(ConfigError, match="has no COMPLETE trial yet"):
        _ = study.best_value
    run(study)
    best = study.best_trial
    assert study.best_params == best.params and study.best_value == best.fitness


def test_trials_dataframe_has_a_column_per_param_and_metric(tmp_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    study = pbtune.create_study("s", **settings(tmp_path))
    run(study)
    frame = study.trials_dataframe()
    trials = study.trials()
    assert list(frame.columns) == [
        "number", "state", "member", "generation", "parent", "decision", "start_step",
        "end_step", "fitness", "params_lr", "params_width", "metrics_score", "metrics_half",
        "datetime_created", "datetime_start", "datetime_complete", "duration", "worker"]
    assert list(frame["number"]) == [t.number for t in trials]
    numbers = {t.id: t.number for t in trials}
    assert [None if pandas.isna(p) else p for p in frame["parent"]] == [
        numbers.get(t.parent_id) if t.parent_id is not None else None for t in trials]
    assert list(frame["params_lr"]) == [t.params["lr"] for t in trials]
    assert list(frame["metrics_score"]) == [t.metrics["score"] for t in trials if t.metrics]
    assert (frame["duration"].dt.total_seconds() >= 0).all()
    complete = study.trials_dataframe([TrialState.COMPLETE])
    assert set(complete["state"]) == {"COMPLETE"} and list(complete.index) == list(
        range(len(complete)))
    fresh = pbtune.create_study("fresh", **settings(tmp_path))
    queued = fresh.trials_dataframe()  # nothing ran: metrics and times are missing
    assert list(queued["state"]) == ["QUEUED"] * 3 and queued["datetime_start"].isna().all()


def test_trials_dataframe_without_pandas_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    study = pbtune.create_study("s", **settings(tmp_path))
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ConfigError, match=r'pip install "pbtune\[pandas\]"'):
        study.trials_dataframe()


def test_the_same_settings_again_write_nothing(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    run(pbtune.create_study("same", **settings(tmp_path)))

    def no_write(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("loading a study with its own settings wrote to the storage")

    monkeypatch.setattr(pbtune.Storage, "write", no_write)
    again = pbtune.create_study("same", load_if_exists=True, **settings(tmp_path))
    assert again.state == StudyState.COMPLETE


def test_pandas_is_imported_only_for_a_dataframe() -> None:
    code = ("import sys, pbtune\n"
            "print(sorted(m for m in ('pandas', 'torch', 'ray', 'matplotlib') "
            "if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
