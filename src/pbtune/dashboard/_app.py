"""The dashboard's WSGI app: a static page and read-only JSON endpoints.

Only GET (and HEAD) are served; every response carries a strict Content-Security-Policy
(scripts and styles from this server only, no inline code), so text from a study is data.
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from pbtune.dashboard import _data as data
from pbtune.dashboard import _fitness as fitness
from pbtune.dashboard import _front
from pbtune.storages import Storage
from pbtune.study import schedule_csv, schedule_json

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
STATIC_FILES = (
    "index.html", "app.js", "charts.js", "plots.js", "front.js", "schedules.js", "app.css",
    "favicon.svg",
    # uPlot, vendored (see static/vendor/README.md): served from here, never from a CDN.
    "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css", "vendor/LICENSE-uPlot.txt",
)
StartResponse = Callable[..., Any]
# The study is a query parameter: a name may hold any character, "/" included.
VIEWS = ("summary", "plot", "front", "lineage", "schedules", "trials", "schedule.json",
         "schedule.csv")


class _HttpError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def _headers(content_type: str, extra: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    return [
        ("Content-Type", content_type),
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
        *extra,
    ]


def _int(query: dict[str, list[str]], name: str, default: int | None) -> int | None:
    values = query.get(name)
    if not values or values[0] == "":
        return default
    try:
        return int(values[0])
    except ValueError:
        raise _HttpError("400 Bad Request", f"{name} must be an integer") from None


class DashboardApp:
    """``DashboardApp(storage)`` is a WSGI callable; `pbtune dashboard` serves it."""

    def __init__(self, storage: Storage, study: str | None = None) -> None:
        self.data = data.StudyData(storage)
        self.study = study

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        try:
            if method not in ("GET", "HEAD"):
                raise _HttpError("405 Method Not Allowed", "the dashboard is read-only")
            status, content_type, body, extra = self._route(path, environ)
        except _HttpError as error:
            status, content_type, extra = error.status, "application/json", []
            body = json.dumps({"error": str(error)}).encode()
            if error.status.startswith("405"):
                extra = [("Allow", "GET, HEAD")]
        start_response(status, _headers(content_type, extra))
        return [b"" if method == "HEAD" else body]

    def _route(self, path: str, environ: dict[str, Any]
               ) -> tuple[str, str, bytes, list[tuple[str, str]]]:
        if path == "/":
            path = "/static/index.html"
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if path == "/api/studies":
            return self._json(self._studies())
        if path == "/api/config":
            return self._json({"study": self.study})
        view = path[len("/api/"):]
        if not path.startswith("/api/") or view not in VIEWS:
            raise _HttpError("404 Not Found", f"no such page: {path}")
        name = query.get("study", [""])[0]
        if not name:
            raise _HttpError("400 Bad Request", "pass the study's name as ?study=NAME")
        try:
            return self._view(name, view, query)
        except data.NotFound as error:
            raise _HttpError("404 Not Found", str(error)) from None
        except ValueError as error:
            raise _HttpError("400 Bad Request", str(error)) from None

    def _view(self, name: str, view: str, query: dict[str, list[str]]
              ) -> tuple[str, str, bytes, list[tuple[str, str]]]:
        study = self.data.study(name)
        trial = _int(query, "trial", None)
        if view == "summary":
            return self._json(data.summary(self.data, study))
        if view == "plot":  # ?objective=NAME: which one, in a study of several
            objective = query.get("objective", [""])[0] or None
            return self._json(fitness.plot(self.data, study, objective=objective))
        if view == "front":
            return self._json(_front.front_view(self.data, study))
        if view == "lineage":
            return self._json(data.lineage_view(self.data, study, trial))
        if view == "schedules":
            return self._json(data.schedules(self.data, study, trial))
        if view == "trials":
            state = query.get("state", [""])[0] or None
            return self._json(data.table(
                self.data, study, offset=_int(query, "offset", 0) or 0,
                limit=_int(query, "limit", 50) or 50, state=state,
                sort=query.get("sort", ["id"])[0], descending=query.get("desc", ["0"])[0] == "1",
            ))
        segments = data.schedule_segments(self.data, study, trial)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80] or "study"
        if view == "schedule.csv":
            names = data.param_names(study)
            body, kind, ext = schedule_csv(segments, names), "text/csv; charset=utf-8", "csv"
        else:
            body, kind, ext = schedule_json(segments), "application/json", "json"
        disposition = ("Content-Disposition", f'attachment; filename="{safe}-schedule.{ext}"')
        return "200 OK", kind, body.encode(), [disposition]

    def _studies(self) -> list[dict[str, Any]]:
        records = self.data.storage.list_studies()
        if self.study is not None:
            records = [r for r in records if r.name == self.study]
        return [data.summary(self.data, record) for record in records]

    @staticmethod
    def _json(payload: Any) -> tuple[str, str, bytes, list[tuple[str, str]]]:
        body = json.dumps(payload, separators=(",", ":"), allow_nan=False, default=str)
        return "200 OK", "application/json", body.encode(), []

    @staticmethod
    def _static(name: str) -> tuple[str, str, bytes, list[tuple[str, str]]]:
        if name not in STATIC_FILES:
            raise _HttpError("404 Not Found", f"no such file: {name}")
        folder = resources.files("pbtune.dashboard").joinpath("static")
        body = folder.joinpath(*name.split("/")).read_bytes()
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=utf-8"
        return "200 OK", kind, body, []
