"""`pbtune dashboard` and `pbtune plot`: a study's views in a browser, or as PNG files."""

from __future__ import annotations

import errno
from pathlib import Path

import click

from pbtune._errors import ConfigError
from pbtune.cli._open import open_existing, select_study
from pbtune.cli._options import storage_option, study_option


@click.command()
@storage_option
@study_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; 0.0.0.0 serves other machines too (no authentication).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
def dashboard(storage_url: str, study_name: str | None, host: str, port: int) -> None:
    """Serve a read-only web dashboard of the studies (live while they run)."""
    from pbtune.dashboard import DashboardApp, make_dashboard_server

    storage = open_existing(storage_url)
    if study_name is not None:
        storage.get_study(study_name)  # a clear error for a wrong name, before serving
    try:
        server = make_dashboard_server(DashboardApp(storage, study_name), host, port)
    except OSError as error:
        raise _bind_error(error, host, port) from None
    click.echo(f"pbtune dashboard on http://{host}:{server.server_port}/ (Ctrl-C to stop)",
               err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def _bind_error(error: OSError, host: str, port: int) -> Exception:
    """A one-line error for a port that cannot be bound, with what to do about it."""
    if error.errno == errno.EADDRINUSE:
        return ConfigError(
            f"port {port} on {host} is already in use (another dashboard or server?): pass "
            f"--port N with a free port (--port 0 picks one), or stop the other server")
    if error.errno in (errno.EACCES, errno.EPERM):
        return ConfigError(f"no permission to bind port {port} on {host}: pass --port N with "
                           f"N above 1023 (--port 0 picks a free one)")
    if error.errno == errno.EADDRNOTAVAIL:
        return ConfigError(f"cannot bind {host}: it is not an address of this machine; pass "
                           f"--host 127.0.0.1 (this machine only) or 0.0.0.0 (all of them)")
    return error


@click.command()
@storage_option
@study_option
@click.option("--out", "out_dir", required=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path), help="Folder for the PNG files.")
def plot(storage_url: str, study_name: str | None, out_dir: Path) -> None:
    """Write the PBT plot, the best lineage and its schedules as PNGs (needs matplotlib)."""
    from pbtune.dashboard import write_plots

    storage = open_existing(storage_url)
    study = select_study(storage, study_name)
    for path in write_plots(storage, study, out_dir):
        click.echo(f"wrote {path}", err=True)
