"""`pbtune plot` writes the three views as PNGs; `pbtune dashboard` refuses a wrong study."""

from __future__ import annotations

import builtins
import json
import os
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
