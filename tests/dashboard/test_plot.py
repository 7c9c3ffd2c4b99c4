"""`pbtune plot` writes the three views as PNGs; `pbtune dashboard` refuses a wrong study."""

from __future__ import annotations

import builtins
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import pbtune
from dashboard.toy import STUDY, make_study
from pbtune.cli import cli
from pbtune.dashboard import _data, _fitness, _plot

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("plot")
    url = f"sqlite:///{folder}/s.db"
    storage = pbtune.Storage(url)
    make_study(storage, folder / "ck")
    storage.dispose()
    return url


def test_plot_writes_three_pngs(sqlite_url: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = CliRunner().invoke(cli, ["plot", "--storage", sqlite_url, "--study", STUDY,
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for name in ("pbt.png", "lineage.png", "schedules.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000


def rising(trial: pbtune.Trial) -> dict[str, float]:
    """Fitness that rises with steps; trial 0 (generation 0) is a far outlier at 0.1."""
    (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
    if trial.number == 0:
        return {"acc": 0.1}
    return {"acc": 0.9 + 0.0005 * trial.end_step + 0.001 * trial.params["x"]}


def test_the_pbt_png_fits_the_race_and_marks_a_first_generation_outlier(tmp_path: Path) -> None:
    plt = _plot._pyplot()
    storage = pbtune.Storage(None)
    study = pbtune.create_study(
        "outlier", storage=storage, metric="acc", space={"x": pbtune.Float(0.0, 1.0)},
        population_size=4, steps_per_trial=2, max_steps=20, checkpoint_root=tmp_path, seed=3,
    )
    study.optimize(rising, workers=1, show_progress=False)
    record = storage.get_study("outlier")
    plot = _fitness.plot(_data.StudyData(storage), record)
    figure = _plot.pbt_figure(plt, plot, record)
    low, high = figure.axes[0].get_ylim()
    complete = study.trials([pbtune.TrialState.COMPLETE])
    others = [t.fitness for t in complete if t.number != 0]
    assert 0.1 < low <= min(others) and max(others) <= high  # only the far outlier is out
    assert low <= study.best_trial.fitness <= high
    marks = [c for c in figure.axes[0].collections
             if len(c.get_offsets()) and all(y == low for _, y in c.get_offsets())]
    below = [t for t in complete if t.fitness < low]
    assert any(t.number == 0 for t in below)
    assert sum(len(c.get_offsets()) for c in marks) == len(below)  # each marked at the edge
    plt.close(figure)
    storage.dispose()


def test_the_lineage_png_has_member_lanes_and_whole_generations(sqlite_url: str) -> None:
    plt = _plot._pyplot()
    storage = pbtune.Storage(sqlite_url)
    record = storage.get_study(STUDY)
    nodes = _data.lineage_view(_data.StudyData(storage), record, None)["nodes"]
    figure = _plot.lineage_figure(plt, nodes, record)
    ax = figure.axes[0]
    figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"member {m}" for m in sorted({n["member"] for n in nodes})]
    assert all(float(t).is_integer() for t in ax.get_xticks())
    plt.close(figure)
    storage.dispose()


def test_the_schedules_png_has_a_title_a_legend_and_log_axes(sqlite_url: str) -> None:
    plt = _plot._pyplot()
    storage = pbtune.Storage(sqlite_url)
    record = storage.get_study(STUDY)
    sched = _data.schedules(_data.StudyData(storage), record, None)
    figure = _plot.schedules_figure(plt, sched, record)
    assert STUDY in figure._suptitle.get_text()
    assert figure.axes[0].get_legend() is not None
    assert [ax.get_ylabel() for ax in figure.axes] == ["h0", "<script>alert(1)</script>", "opt"]
    plt.close(figure)
    storage.dispose()


def test_dashboard_on_a_taken_port_says_to_pass_another(sqlite_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["dashboard", "--storage", sqlite_url,
                                          "--port", str(port)])
    assert result.exit_code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.output
    assert "--port N" in result.output and "--port 0" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_plot_without_matplotlib_says_how_to_get_it(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = CliRunner().invoke(cli, ["plot", "--storage", sqlite_url, "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert 'pip install "pbtune[plot]"' in result.output
    assert not list(tmp_path.iterdir())


def test_dashboard_refuses_an_unknown_study(sqlite_url: str) -> None:
    result = CliRunner().invoke(cli, ["dashboard", "--storage", sqlite_url, "--study", "nope",
                                      "--port", "0"])
    assert result.exit_code == 1
    assert "no study named 'nope'" in result.output


def test_dashboard_binds_to_localhost_by_default() -> None:
    params = {p.name: p.default for p in cli.commands["dashboard"].params}
    assert params["host"] == "127.0.0.1"
    assert params["port"] == 8080


def test_dashboard_command_serves_the_study(sqlite_url: str) -> None:
    """The real command in its own process, on a free port, answers GET and refuses POST."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pbtune", "dashboard", "--storage", sqlite_url, "--port", "0"],
        stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert line.startswith("pbtune dashboard on http://127.0.0.1:"), line
        base = line.split()[3].rstrip("/")
        with urllib.request.urlopen(base + "/api/studies") as response:
            assert response.headers["Content-Type"] == "application/json"
            assert [s["name"] for s in json.load(response)] == [STUDY]
        request = urllib.request.Request(base + "/api/studies", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        assert refused.value.code == 405
    finally:
        process.terminate()
        process.wait()
