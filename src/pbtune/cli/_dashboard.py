"""`pbtune dashboard` and `pbtune plot`: a study's views in a browser, or as PNG files."""

from __future__ import annotations

from pathlib import Path

import click

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
    server = make_dashboard_server(DashboardApp(storage, study_name), host, port)
    click.echo(f"pbtune dashboard on http://{host}:{server.server_port}/ (Ctrl-C to stop)",
               err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


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
