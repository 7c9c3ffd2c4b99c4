"""What a user sees while and after a study runs: a log line per finished trial (also
when the output goes to a file), status lines off a terminal, the summary `optimize`
returns and logs, the level that silences them, and Ctrl-C as one line."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

import pbtune
import tradeoff
from pbtune.cli import cli
from pbtune.study import _monitor, front_text, next_commands, storage_text, summarize
from pbtune.study._monitor import LocalWorkers, RunMonitor
from pbtune.study._text import counts_text
from pbtune.trial import FrozenTrial, TrialState

SCRIPT = '''
import json, logging, os, sys, time
import pbtune


def train(trial):
    if os.environ.get("SLOW"):
        time.sleep(600)  # stopped by the test's Ctrl-C
    score = 0.0
    if trial.parent_checkpoint is not None:
        score = json.loads((trial.parent_checkpoint / "s.json").read_text())["s"]
    if trial.member == 0 and trial.start_step == 2 and not os.environ.get("NO_FAILURE"):
        raise ValueError("planted failure")
    score += trial.params["lr"] * (trial.end_step - trial.start_step)
    (trial.checkpoint_dir / "s.json").write_text(json.dumps({"s": score}))
    return {"accuracy": score}


if __name__ == "__main__":
    if os.environ.get("QUIET"):
        logging.getLogger("pbtune").setLevel(logging.WARNING)
    study = pbtune.create_study(
        "out", storage="sqlite:///out.db", space={"lr": pbtune.Float(0.01, 1.0, log=True)},
        metric="accuracy", population_size=3, steps_per_trial=1, max_steps=4,
        max_retries=1, load_if_exists=True, checkpoint_root="ckpt",
    )
    summary = study.optimize(train, workers=2)
    print("RETURNED", json.dumps({
        "state": summary.state.value, "number": summary.best_trial.number,
        "fitness": summary.fitness, "checkpoint": str(summary.checkpoint),
        "params": summary.params, "steps": [summary.steps_done, summary.steps_total],
    }))
'''

TRIAL_LINE = re.compile(r"\] trial (\d+) \(member \d+, steps \d+-\d+\) (finished|failed|lost)")


def _run_script(folder: Path, **env: str) -> tuple[int, str]:
    """``python script.py > log 2>&1``: stdout and stderr into one file, no terminal."""
    log = folder / "log.txt"
    with log.open("w") as out:
        code = subprocess.run(
            [sys.executable, "script.py"], cwd=folder, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **env}, timeout=120, check=False,
        ).returncode
    return code, log.read_text()


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("output")
    (folder / "script.py").write_text(SCRIPT)
    code, text = _run_script(folder)
    assert code == 0, text
    return folder, text


def test_a_run_into_a_file_logs_one_line_per_finished_trial(ran: tuple[Path, str]) -> None:
    folder, text = ran
    study = pbtune.load_study("out", storage=f"sqlite:///{folder / 'out.db'}")
    finished = [t for t in study.trials() if not t.state.is_active]
    logged = [int(m.group(1)) for m in TRIAL_LINE.finditer(text)]
    assert sorted(logged) == sorted(t.number for t in finished)  # each one exactly once
    failed = next(t for t in finished if t.state == TrialState.FAILED)
    assert (f"trial {failed.number} (member 0, steps 2-3) failed: ValueError: planted failure "
            "(failure 1 in a row, max_retries=1); next: retry as trial") in text
    failures = [t for t in finished if t.state == TrialState.FAILED]
    assert text.count("planted failure") == len(failures)  # said once, by the run
    assert "Traceback" not in text


def test_the_summary_is_logged_and_returned(ran: tuple[Path, str]) -> None:
    folder, text = ran
    study = pbtune.load_study("out", storage=f"sqlite:///{folder / 'out.db'}")
    best = study.best_trial
    returned = json.loads(text.split("RETURNED ", 1)[1].splitlines()[0])
    # Steps that trained to completion: member 0 gives up if its planted failure comes
    # (unless it copied a member past step 2 first), and then counts as far as it got.
    done = sum(max(t.end_step for t in study.trials([TrialState.COMPLETE]) if t.member == m)
               for m in range(3))
    assert returned == {
        "state": "COMPLETE", "number": best.number, "fitness": best.fitness,
        "checkpoint": str(best.checkpoint), "params": best.params, "steps": [done, 12],
    }
    assert (f"study 'out' COMPLETE in sqlite:///out.db: {done}/12 steps "
            f"({100 * done / 12:.0f}%)") in text
    assert (f"best at max_steps: accuracy (max) {best.fitness:.6g}, trial {best.number} "
            f"(member {best.member}, steps 3-4)") in text
    assert f"checkpoint (the trained model): {best.checkpoint}" in text
    for command in ("status", "dashboard", "schedule"):
        assert f"pbtune {command} --storage sqlite:///out.db --study out" in text


def test_a_complete_study_has_nothing_left_to_run(ran: tuple[Path, str]) -> None:
    folder, _ = ran
    code, text = _run_script(folder)
    assert code == 0, text
    assert "study 'out' is COMPLETE: nothing left to run" in text
    assert "best at max_steps" in text and not TRIAL_LINE.search(text)


def test_the_logging_level_silences_the_lines(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(SCRIPT)
    code, text = _run_script(tmp_path, QUIET="1")
    assert code == 0, text
    # At WARNING only the trials that failed are still told, once each.
    kinds = [m.group(2) for m in TRIAL_LINE.finditer(text)]
    assert "finished" not in kinds and "best at max_steps" not in text
    study = pbtune.load_study("out", storage=f"sqlite:///{tmp_path / 'out.db'}")
    assert kinds.count("failed") == len(study.trials([TrialState.FAILED]))
    assert "RETURNED" in text  # the run itself is the same


# -- status lines and the words ----------------------------------------------------------------
def _study(tmp_path: Path) -> pbtune.Study:
    return pbtune.create_study(
        "words", storage=None, space={"x": pbtune.Float(0.5, 1.0)}, metric="loss",
        mode="min", population_size=2, steps_per_trial=1, max_steps=2,
        checkpoint_root=tmp_path,
    )


def _train(trial: pbtune.Trial) -> dict[str, float]:
    (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
    return {"loss": 1.0 / (trial.end_step * trial.params["x"])}


def test_status_lines_off_a_terminal_unless_show_progress_is_false(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    study = _study(tmp_path)
    study.optimize(_train, show_progress=False)
    monkeypatch.setattr(_monitor, "STATUS_EVERY_S", 0.0)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: no bar
    record = study.storage.get_study(study.name)
    best = study.best_trial
    with caplog.at_level(logging.INFO, logger="pbtune"):
        for show, expected in ((None, 1), (False, 0)):
            caplog.clear()
            with RunMonitor(study.storage, record, show_progress=show) as monitor:
                monitor.tick()
            lines = [m for m in caplog.messages if m.startswith("study 'words': ")]
            assert len(lines) == expected
    assert lines == [] and monitor.status_line().startswith(
        "study 'words': 4/4 steps (100%), trials: 4 complete; best so far: loss (min) "
        f"{best.fitness:.6g} (trial {best.number});"
    )


def test_join_logs_the_trials_its_own_workers_ran(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    study = _study(tmp_path)
    with caplog.at_level(logging.INFO, logger="pbtune"):
        study.join(_train)
    logged = sorted(int(m.group(1)) for m in map(TRIAL_LINE.search,
                                                 ("] " + m for m in caplog.messages)) if m)
    assert logged == [t.number for t in study.trials()]
    other = FrozenTrial(id=9, member=0, generation=0, parent_id=None, params={},
                        start_step=0, end_step=1, state=TrialState.COMPLETE,
                        worker="elsewhere:1:abc")
    assert not LocalWorkers()(other)


def test_counts_lost_trials_apart_and_commands_are_written_for_any_state_and_url() -> None:
    counts = {state: 0 for state in TrialState} | {TrialState.COMPLETE: 3,
                                                   TrialState.FAILED: 1}
    assert counts_text(counts) == "3 complete, 1 failed"
    lost = counts | {TrialState.LOST: 2}
    assert counts_text(lost) == "3 complete, 1 failed, 2 lost"  # apart from the failures
    url = "postgresql+psycopg://me:secret@db/pbtune"
    assert storage_text(url) == "postgresql://me:***@db/pbtune"
    assert next_commands(url, "my study")[0] == (
        "pbtune status --storage 'postgresql://me:***@db/pbtune' --study 'my study'")
    assert next_commands(None, "x") == [] and storage_text("sqlite://") == "memory"


# -- the command line ----------------------------------------------------------------------------
STUDY_YAML = """
name: made
metric: accuracy
population_size: 2
steps_per_trial: 1
max_steps: 2
space:
  lr: {type: float, low: 0.01, high: 1.0, log: true}
checkpoint_root: ckpt
"""


def test_create_says_what_it_did_and_what_comes_next(tmp_path: Path) -> None:
    (tmp_path / "study.yaml").write_text(STUDY_YAML)
    url = f"sqlite:///{tmp_path / 'made.db'}"
    args = ["create", "--config", str(tmp_path / "study.yaml"), "--storage", url]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert f"study 'made' created in {url}" in first.stdout
    assert f"pbtune worker --storage {url} --study made --entry path/to/script.py:train" in (
        first.stdout)
    assert "pbtune run path/to/script.py:train --config" in first.stdout
    again = CliRunner().invoke(cli, args)
    assert f"study 'made' exists with the same settings in {url}" in again.stdout


def test_replay_deletes_its_temporary_folder(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    (tmp_path / "t.py").write_text(textwrap.dedent("""
        def train(trial):
            (trial.checkpoint_dir / "w").write_text("1")
            return {"accuracy": float(trial.end_step)}
    """))
    (tmp_path / "s.json").write_text(json.dumps(
        [{"start_step": 0, "end_step": 1, "params": {}},
         {"start_step": 1, "end_step": 2, "params": {}}]))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    result = CliRunner().invoke(cli, ["replay", f"{tmp_path / 't.py'}:train",
                                      "--schedule", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert "final metrics: accuracy=2" in result.stdout and "not kept" in result.stdout
    assert list(scratch.iterdir()) == []


# -- Ctrl-C --------------------------------------------------------------------------------------
def _ctrl_c_as_on_a_terminal() -> None:
    """A test run in the background inherits SIGINT ignored: restore the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_running(url: str, process: subprocess.Popen[str]) -> int:
    """Wait until the run has a RUNNING trial (read in the storage); how many it has."""
    for _ in range(1200):
        if process.poll() is not None:
            pytest.fail(f"the run ended early: {process.communicate()}")
        if Path(url.removeprefix("sqlite:///")).exists():
            storage = pbtune.Storage(url)
            try:
                with contextlib.suppress(pbtune.StudyNotFoundError):
                    study = storage.get_study("out")
                    running = storage.count_states(study.id)[TrialState.RUNNING]
                    if running:
                        return running
            finally:
                storage.dispose()
        time.sleep(0.05)
    pytest.fail("no trial started within a minute")


@pytest.mark.parametrize("presses", [1, 2])
@pytest.mark.parametrize("how", ["pbtune run", "python script.py"])
def test_ctrl_c_stops_with_one_line_and_code_130(tmp_path: Path, how: str,
                                                 presses: int) -> None:
    (tmp_path / "script.py").write_text(SCRIPT)
    (tmp_path / "study.yaml").write_text(
        "name: out\nmetric: accuracy\npopulation_size: 3\nsteps_per_trial: 1\nmax_steps: 4\n"
        "space:\n  lr: {type: float, low: 0.01, high: 1.0, log: true}\n")
    url = f"sqlite:///{tmp_path / 'out.db'}"
    args = (["-m", "pbtune", "run", "script.py:train", "--config", "study.yaml",
             "--workers", "2", "--storage", url] if how == "pbtune run" else ["script.py"])
    process = subprocess.Popen(
        [sys.executable, *args], cwd=tmp_path, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env={**os.environ, "SLOW": "1"}, start_new_session=True,
        preexec_fn=_ctrl_c_as_on_a_terminal,
    )
    try:
        _wait_running(url, process)
        for _ in range(presses):  # a terminal's Ctrl-C: the whole group; an impatient user
            os.killpg(process.pid, signal.SIGINT)  # presses it twice
        out, err = process.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    # Python ends a script that Ctrl-C stopped by SIGINT, which a shell reports as 130.
    assert process.returncode == (130 if how == "pbtune run" else -signal.SIGINT), err
    assert "Traceback" not in out + err
    lines = [line for line in (out + err).splitlines() if line.strip()]
    study = pbtune.load_study("out", storage=url)
    lost = study.trials([TrialState.LOST])
    assert lost and all(t.state == TrialState.LOST for t in lost)
    assert not study.trials([TrialState.RUNNING])  # the clean-up ran to its end
    assert len(lines) == 1, lines
    assert re.fullmatch(
        rf"\[W [-\d]+ [:\d]+ pbtune\] interrupted: {len(lost)} running trial\(s\) stopped; "
        "they are retried on the next run and do not count as failures; run the same "
        "command again to continue study 'out'", lines[0]), lines[0]


def test_each_look_reads_only_the_trials_that_changed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from pbtune.study._report import TrialLog
    from pbtune.worker import run_worker

    study = _study(tmp_path)
    reads: list[tuple[int, frozenset[int], list[int]]] = []
    since = study.storage.get_trials_since

    def recorded(study_id: int, after: int, also: frozenset[int] = frozenset()
                 ) -> list[FrozenTrial]:
        found = since(study_id, after, also)
        reads.append((after, frozenset(also), [t.id for t in found]))
        return found

    study.storage.get_trials_since = recorded  # type: ignore[method-assign]
    log = TrialLog(study.storage, study.storage.get_study("words"))
    with caplog.at_level(logging.INFO, logger="pbtune"):
        while study.state == pbtune.StudyState.RUNNING:
            run_worker(study.storage, "words", _train, max_trials=1)
            log.read()
    assert reads[0][0] == -1  # the first look reads the study whole; later ones do not
    highest = reads[0][2][-1]
    for after, also, found in reads[1:]:
        assert after == highest and set(found) >= also
        assert all(n in also or n > after for n in found)
        highest = max([after, *found])
    lines = [m for m in map(TRIAL_LINE.search, ("] " + m for m in caplog.messages)) if m]
    assert sorted(int(m.group(1)) for m in lines) == [t.id for t in study.trials()]


# -- several objectives and constraints --------------------------------------------------------
FINISHED = re.compile(r"trial (\d+) \(member \d+, steps \d+-\d+\) finished: ")


def _logged(run: Callable[[], pbtune.Study]) -> tuple[pbtune.Study, list[str]]:
    """The study ``run`` makes and the messages the ``pbtune`` logger had meanwhile."""
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("pbtune")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        return run(), messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> tuple[pbtune.Study, list[str]]:
    folder = tmp_path_factory.mktemp("three")
    return _logged(lambda: tradeoff.make(None, "three", folder, objectives=3))


@pytest.fixture(scope="module")
def constrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[pbtune.Study, list[str]]:
    folder = tmp_path_factory.mktemp("constrained")
    return _logged(lambda: tradeoff.make(None, "one", folder, objectives=None))


def _finished(messages: list[str]) -> list[tuple[int, str]]:
    return [(int(m.group(1)), text) for text in messages if (m := FINISHED.match(text))]


def test_lines_of_several_objectives_give_each_value_the_front_and_restarts(
        three: tuple[pbtune.Study, list[str]]) -> None:
    study, messages = three
    trials = {t.number: t for t in study.trials()}
    finished = _finished(messages)
    assert sorted(n for n, _ in finished) == sorted(trials)  # every trial completed
    for number, line in finished:
        trial = trials[number]
        values = ", ".join(f"{name} ({mode}) {trial.metrics[name]:.6g}"  # type: ignore[index]
                           for name, mode in tradeoff.OBJECTIVES[3].items())
        assert line.startswith(f"trial {number} (member {trial.member}, steps "
                               f"{trial.start_step}-{trial.end_step}) finished: {values}")
        assert ("infeasible: memory_mb" in line) == tradeoff.infeasible(trial), line
        assert "fitness" not in line and "best so far" not in line and "; front: " in line
    # the last line's front is the study's: every member's final trial had come in
    assert finished[-1][1].endswith(f"; front: {front_text(study.best_trials)}")
    restarts = [t for t in trials.values() if t.decision == "restart"]
    assert restarts, "the study should have restarts"
    lines = dict(finished)
    for restart in restarts:
        parent = trials[restart.parent_id]  # type: ignore[index]
        before = max(t.number for t in trials.values()
                     if t.member == restart.member and t.number < restart.number)
        assert (f"; next: restart from trial {parent.number} (member {parent.member}) as "
                f"trial {restart.number};") in lines[before]


def test_the_summary_and_status_line_of_several_objectives_list_the_front(
        three: tuple[pbtune.Study, list[str]]) -> None:
    study, messages = three
    record = study.storage.get_study(study.name)
    summary = summarize(study.storage, record, 1.0)
    front = study.best_trials
    assert summary.best_trial is None and summary.front == front and len(front) > 1
    text = str(summary)
    rest = text.split("\n", 1)[1]  # the first line has this call's elapsed time
    assert any(m.endswith(rest) for m in messages)  # the summary `optimize` logged
    assert (f"front at max_steps: {len(front)} trials (accuracy (max), latency_ms (min), "
            "memory_mb (min); constraints memory_mb <= 2400)") in text
    for trial in front[:5]:
        values = ", ".join(f"{name} {trial.metrics[name]:.6g}"  # type: ignore[index]
                           for name in tradeoff.OBJECTIVES[3])
        assert (f"  trial {trial.number} (member {trial.member}, steps {trial.start_step}-"
                f"{trial.end_step}): {values}\n") in text + "\n"
    assert "study.best_trials" in text and "no trial has completed" not in text
    with RunMonitor(study.storage, record, show_progress=False) as monitor:
        line = monitor.status_line()
    assert f"; front: {front_text(front)}; " in line and "best so far" not in line


def test_a_constrained_study_s_best_so_far_is_the_best_feasible_trial(
        constrained: tuple[pbtune.Study, list[str]]) -> None:
    study, messages = constrained
    trials = {t.number: t for t in study.trials()}
    best: pbtune.FrozenTrial | None = None
    overtaken = 0  # lines where an infeasible trial was more accurate than the best
    for number, line in _finished(messages):
        trial = trials[number]
        head, _, _ = line.partition("; next:")
        assert ("infeasible: memory_mb" in head) == tradeoff.infeasible(trial), line
        fitness = trial.fitness
        assert fitness is not None
        if not tradeoff.infeasible(trial) and (best is None or fitness > best.fitness):
            best = trial
        if best is not None:
            assert line.endswith(f"; best so far: {best.fitness:.6g} (trial {best.number})")
            overtaken += any(tradeoff.infeasible(t) and t.fitness > best.fitness  # type: ignore
                             for n, t in trials.items() if n <= number)
    assert overtaken, "an infeasible trial should have beaten the best feasible one"
    summary = summarize(study.storage, study.storage.get_study(study.name), 1.0)
    assert summary.best_trial == study.best_trial
    assert not tradeoff.infeasible(study.best_trial)
    assert str(summary).startswith("study 'one' COMPLETE in memory")
    assert (f"best at max_steps: accuracy (max) {study.best_value:.6g}, trial "
            f"{study.best_trial.number} ") in str(summary)


def test_the_dataframe_of_several_objectives_has_their_values_and_the_front(
        three: tuple[pbtune.Study, list[str]],
        constrained: tuple[pbtune.Study, list[str]]) -> None:
    pytest.importorskip("pandas")
    study, _ = three
    frame = study.trials_dataframe()
    assert "fitness" not in frame.columns
    assert list(frame.columns[8:13]) == ["values_accuracy", "values_latency_ms",
                                         "values_memory_mb", "front", "violation"]
    assert frame.loc[frame["front"], "number"].tolist() == [t.number for t in study.best_trials]
    for name in tradeoff.OBJECTIVES[3]:
        assert frame[f"values_{name}"].tolist() == frame[f"metrics_{name}"].tolist()
    by_number = {t.number: t for t in study.trials()}
    assert [v > 0 for v in frame["violation"]] == [
        tradeoff.infeasible(by_number[n]) for n in frame["number"]]
    single = constrained[0].trials_dataframe()
    assert list(single.columns[8:9]) == ["fitness"] and "violation" in single.columns
    assert "front" not in single.columns
