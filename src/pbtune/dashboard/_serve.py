"""Serving the dashboard with the standard library: one thread per request."""

from __future__ import annotations

import logging
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from pbtune.dashboard._app import DashboardApp

_log = logging.getLogger("pbtune.dashboard")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        _log.debug(format, *args)


def make_dashboard_server(app: DashboardApp, host: str = "127.0.0.1",
                          port: int = 8080) -> WSGIServer:
    """A server for ``app`` bound to ``host:port`` (port 0: any free port); call
    ``serve_forever()`` on it. Example::

        server = make_dashboard_server(DashboardApp(Storage("sqlite:///pbtune.db")))
    """
    return make_server(host, port, app, server_class=_ThreadingServer,
                       handler_class=_QuietHandler)
