"""Choosing where the workers run: `Study.optimize(backend=...)`, `RayBackend`, and
`Study.join` (what `pbtune worker` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import pbtune
from pbtune import ConfigError


def memory_study() -> pbtune.Study:
    return pbtune.create_study("b", storage=None, space={"x": pbtune.Float(0, 1)}, metric="m",
                               population_size=2, steps_per_trial=1, max_steps=2)


def train(trial: pbtune.Trial) -> dict[str, float]:
    (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
    return {"m": trial.params["x"]}


@pytest.mark.parametrize("backend", ["ray", pbtune.RayBackend(), "process"])
def test_an_in_memory_study_refuses_remote_workers(backend: object) -> None:
    with pytest.raises(ConfigError, match="in-memory"):
        memory_study().optimize(train, backend=backend)  # type: ignore[arg-type]


def test_an_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'process', 'thread', 'ray'"):
        memory_study().optimize(train, backend="dask")


def test_thread_backend_runs_an_in_memory_study() -> None:
    study = memory_study()
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
def test_join_checks_its_arguments(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        memory_study().join(**{"train": train, **args})


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
