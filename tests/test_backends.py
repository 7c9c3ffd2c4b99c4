"""Choosing where the workers run: `Study.optimize(backend=...)`, `RayBackend`, and
`Study.join` (what `pbtune worker` runs)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import pbtune
from pbtune import ConfigError


def memory_study(root: Path) -> pbtune.Study:
    return pbtune.create_study("b", storage=None, space={"x": pbtune.Float(0, 1)}, metric="m",
                               population_size=2, steps_per_trial=1, max_steps=2,
                               checkpoint_root=root)


def train(trial: pbtune.Trial) -> dict[str, float]:
    (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
    return {"m": trial.params["x"]}


@pytest.mark.parametrize("backend", ["ray", pbtune.RayBackend(), "process"])
def test_an_in_memory_study_refuses_remote_workers(backend: object, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="in-memory"):
        memory_study(tmp_path).optimize(train, backend=backend)  # type: ignore[arg-type]


def test_an_unknown_backend_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'process', 'thread', 'ray'"):
        memory_study(tmp_path).optimize(train, backend="dask")


def test_thread_backend_runs_an_in_memory_study(tmp_path: Path) -> None:
    study = memory_study(tmp_path)
    study.optimize(train, workers=2, backend="thread", show_progress=False)
    assert study.state == pbtune.StudyState.COMPLETE


def test_join_runs_trials_in_this_process_and_counts_them(tmp_path: Path) -> None:
    study = pbtune.create_study("j", storage=None, space={"x": pbtune.Float(0, 1)},
                                metric="m", population_size=2, steps_per_trial=1, max_steps=3,
                                checkpoint_root=tmp_path)
    assert study.join(train, max_trials=1) == 1
    assert study.state == pbtune.StudyState.RUNNING  # stopped early: no error, others go on
    assert study.join(train) == len(study.trials()) - 1
    assert study.state == pbtune.StudyState.COMPLETE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"workers": 0}, "workers must be an int >= 1"),
        ({"max_trials": 0}, "max_trials must be an int >= 1"),
        ({"role": "watch"}, "role must be one of both, train, evaluate"),
        ({"role": "evaluate"}, "has no evaluate function"),
        ({"train": None}, "only role='evaluate' runs without one"),
        ({"train": 3}, "train must be a function"),
        ({"workers": 2}, "need a database storage"),
    ],
)
def test_join_checks_its_arguments(args: dict[str, Any], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        memory_study(tmp_path).join(**{"train": train, **args})


def test_ray_backend_maps_resources_to_actor_options() -> None:
    options = pbtune.RayBackend(resources_per_trial={"CPU": 2, "GPU": 1, "TPU": 4},
                                runtime_env={"pip": ["x"]}).actor_options()
    assert options["num_cpus"] == 2 and options["num_gpus"] == 1
    assert options["resources"] == {"TPU": 4} and options["runtime_env"] == {"pip": ["x"]}
    assert pbtune.RayBackend().actor_options()["num_cpus"] == 1
    with pytest.raises(ConfigError, match="GPU"):
        pbtune.RayBackend(resources_per_trial={"GPU": -1}).actor_options()


def test_pbtune_imports_without_ray() -> None:
    import subprocess
    import sys

    code = "import sys; import pbtune; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ctrl_c_with_threads_does_not_wait_for_the_running_trials(tmp_path: Path) -> None:
    from pbtune.controller import Controller
    from pbtune.worker import run_threads

    study = pbtune.create_study("t", storage=None, space={"x": pbtune.Float(0, 1)},
                                metric="m", population_size=2, steps_per_trial=1,
                                max_steps=3, checkpoint_root=tmp_path)
    release = threading.Event()

    def hangs(trial: pbtune.Trial) -> dict[str, float]:
        release.wait(60)  # until the test lets it go: Ctrl-C must not wait for this
        (trial.checkpoint_dir / "state").write_text("1")
        return {"m": 1.0}

    def ctrl_c_once_running() -> None:
        if study.trials([pbtune.TrialState.RUNNING]):
            raise KeyboardInterrupt

    controller = Controller(study.storage, study.storage.get_study("t"), study.config)
    with pytest.raises(KeyboardInterrupt):
        run_threads(study.storage, controller, hangs, 2, tick=ctrl_c_once_running)
    assert not release.is_set()  # it returned while the trials were still running
    lost = study.trials([pbtune.TrialState.LOST])
    assert lost and not study.trials([pbtune.TrialState.RUNNING])
    release.set()  # the threads finish their trials: their results are refused
    for thread in threading.enumerate():
        if thread.name.startswith("pbtune-worker-"):
            thread.join(timeout=60)
    assert {t.id for t in study.trials([pbtune.TrialState.LOST])} == {t.id for t in lost}
    assert not study.trials([pbtune.TrialState.COMPLETE])
