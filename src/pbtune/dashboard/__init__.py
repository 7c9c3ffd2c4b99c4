"""The web dashboard and PNG plots of a study, read through the storage API only."""

from pbtune.dashboard._app import DashboardApp
from pbtune.dashboard._plot import write_plots
from pbtune.dashboard._serve import make_dashboard_server

__all__ = ["DashboardApp", "make_dashboard_server", "write_plots"]
