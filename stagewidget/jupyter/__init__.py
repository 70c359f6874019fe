"""The runs dashboard inside Jupyter Server, at ``<base_url>stagewidget/``.

A Jupyter Server extension (``jupyter server extension enable stagewidget``; installing
the package enables it): the dashboard page and the read API of the status service,
behind Jupyter's own authentication, over the run history every kernel records
(``$STAGEWIDGET_HOME/history.sqlite3``). A Cancel from the page is carried to the owning
kernel through that database (see ``durable.cancels``). With a status-service store
configured (``--StagewidgetDashboard.store=redis://...`` or ``sqlite:///...``, or
``$STAGEWIDGET_DASHBOARD_STORE``) the runs published there are shown too (``shared``).
Nothing imports this package
but Jupyter Server: it is where tornado and jupyter_server are imported.
"""

from __future__ import annotations

from typing import Any

from .feed import Dashboard
from .handlers import handlers
from .shared import STORE_ENV, open_shared

__all__ = ["STORE_ENV", "Dashboard", "handlers"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "stagewidget.jupyter"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Add the dashboard's routes under ``<base_url>stagewidget/`` (called by Jupyter)."""
    web_app = serverapp.web_app
    shared = open_shared(serverapp.config, serverapp.log)  # a bad setting: logged, None
    dashboard = Dashboard(shared=shared)
    web_app.settings["stagewidget_dashboard"] = dashboard  # for whoever ends the server
    web_app.add_handlers(".*$", handlers(web_app.settings["base_url"], dashboard))
    serverapp.log.info("stagewidget dashboard at %sstagewidget/ (run history: %s%s)",
                       web_app.settings["base_url"], dashboard.reader.path,
                       "" if shared is None else f"; run store: {shared.url}")
