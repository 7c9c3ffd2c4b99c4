"""A real, small PBT study for the dashboard tests, and a WSGI test client."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pbtune
from pbtune.dashboard import DashboardApp

SCRIPT_PARAM = "<script>alert(1)</script>"
STUDY = "toy <b>pbt</b>"


def train(trial: pbtune.Trial) -> dict[str, float]:
    """Jaderberg et al.'s toy quadratic; the third trial fails once, so the table has an error."""
    theta = [0.9, 0.9]
    if trial.parent_checkpoint is not None:
        theta = json.loads((trial.parent_checkpoint / "theta.json").read_text())
    if trial.number == 3:
        raise RuntimeError("boom <img src=x onerror=alert(2)>")
    h = (trial.params["h0"], trial.params[SCRIPT_PARAM])
    for _ in range(trial.start_step, trial.end_step):
        theta = [theta[0] - 0.02 * h[0] * theta[0], theta[1] - 0.02 * h[1] * theta[1]]
    (trial.checkpoint_dir / "theta.json").write_text(json.dumps(theta))
    return {"q": 1.2 - (theta[0] ** 2 + theta[1] ** 2)}


def make_study(storage: pbtune.Storage, checkpoints: Path) -> pbtune.Study:
    study = pbtune.create_study(
        STUDY, storage=storage, metric="q", mode="max",
        space={"h0": pbtune.Float(0.0, 1.0), SCRIPT_PARAM: pbtune.Float(0.0, 1.0),
               "opt": pbtune.Choice(["sgd", "adam"])},
        population_size=4, steps_per_trial=4, max_steps=40, checkpoint_root=checkpoints,
        exploit=pbtune.Truncation(fraction=0.5), seed=1,
    )
    study.optimize(train, workers=2, show_progress=False)
    return study


class Response:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.code = int(status.split()[0])
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def call(app: DashboardApp, path: str, method: str = "GET") -> Response:
    """Call the WSGI app as a server would."""
    path, _, query = path.partition("?")
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path,
                               "QUERY_STRING": query, "wsgi.input": io.BytesIO(b"")}
    setup_testing_defaults(environ)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.update(status=status, headers=headers)

    body = b"".join(app(environ, start_response))
    return Response(seen["status"], seen["headers"], body)
