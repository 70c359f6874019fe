"""The dashboard's tornado routes: the page, its static files and the read API.

Every handler is behind Jupyter's authentication and authorizer (``api.Api``); the API
speaks as the status service does: a run's status JSON, Server-Sent Events in the same
format (``streams``), ``application/problem+json`` errors with a ``detail``.
"""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import urlencode

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from ..service.openapi import MAX_LIMIT, MAX_OFFSET, SUMMARY_KEYS
from ..service.pages import STATIC_DIR, render_index
from ..service.wire import ascii_int
from .api import RESOURCE, Api, Problem, shown
from .feed import Dashboard, status_json
from .streams import ListEventsHandler, RunEventsHandler

__all__ = ["Dashboard", "handlers"]

CSRF_HEADER = "X-XSRFToken"
PAGE_CSP = ("default-src 'self'; frame-ancestors 'self'; form-action 'self'; "
            "base-uri 'none'")
NOT_RETRYABLE = ("a run recorded by a kernel can be retried only in that kernel "
                 "(run.retry() there); a run published to a store, only through the "
                 "status service that runs it")



class SessionHandler(Api):
    """``GET api/session``: Jupyter authenticated the user; the page's XSRF token."""

    @web.authenticated
    @authorized
    def get(self) -> None:
        self.reply({"token_required": False, "session": True, "login": False,
                    "csrf_token": self.xsrf_token.decode("ascii"),
                    "csrf_header": CSRF_HEADER})


class PipelinesHandler(Api):
    """``GET api/pipelines``: none here (runs are started in notebooks)."""

    @web.authenticated
    @authorized
    def get(self) -> None:
        self.reply([])


class RunsHandler(Api):
    """``GET api/runs``: the recorded runs, newest first (``state``, ``pipeline``,
    ``offset``, ``limit``), one page, as the status service lists them."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        state, pipeline = self.filters()
        offset = self.int_param("offset", 0, 0, MAX_OFFSET)
        limit = self.int_param("limit", 50, 1, MAX_LIMIT)
        found, total = await self.statuses(state, pipeline, offset + limit)
        runs = [{k: status.get(k) for k in SUMMARY_KEYS} | {"url": self.run_url(status["run_id"])}
                for status in found[offset:]]
        next_url = None
        if offset + limit < total:
            params = {k: v for k, v in (("state", state), ("pipeline", pipeline)) if v}
            next_url = f"{self.base}api/runs?" + urlencode(
                {**params, "offset": offset + limit, "limit": limit})
        self.reply({"runs": runs, "total": total, "offset": offset, "limit": limit,
                    "next": next_url})

    def int_param(self, name: str, default: int, low: int, high: int) -> int:
        """Query parameter ``name``, validated as the status service does."""
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        value = ascii_int(raw, len(str(high)))
        if value is None or not low <= value <= high:
            raise Problem(400, f"{name} must be an integer between {low} and {high}, in "
                               f"ASCII digits (got {shown(raw)})")
        return value


class RunHandler(Api):
    """``GET api/runs/{id}``: the run's status; ``DELETE``: cancel it (202), through the
    store that holds it (the configured store's way, else the history's cancel flag)."""

    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        self.reply(await self.found(run_id))

    @web.authenticated
    @authorized
    async def delete(self, run_id: str) -> None:
        down: Problem | None = None
        if self.dashboard.shared is not None:
            try:
                status = await self.in_store(self.dashboard.shared.cancel, run_id)
            except Problem as err:
                if err.status_code != 503:
                    raise
                status, down = None, err
            if status is not None:
                self.reply(status, 202)
                return
        try:
            seen = await self.read(self.dashboard.reader.cancel, run_id)
        except Problem as err:
            if down is not None and err.status_code == 404:
                raise down from None  # maybe the store's run: it cannot be asked now
            raise
        self.reply(status_json(seen), 202)


class RetryHandler(Api):
    """``POST api/runs/{id}/retry``: refused (409): only the owning kernel can retry."""

    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        await self.found(run_id)
        raise Problem(409, NOT_RETRYABLE)


class StartHandler(Api):
    """``POST api/pipelines/{name}/runs``: refused (404): no pipeline is served here."""

    @web.authenticated
    @authorized
    def post(self, name: str) -> None:
        raise Problem(404, f"no pipeline named {shown(name)} is served here: the Jupyter "
                           "dashboard shows the runs kernels record and starts none")


class NotFoundHandler(Api):
    """Any other ``api/...`` path: a 404 problem."""

    @web.authenticated
    @authorized
    def get(self, path: str) -> None:
        raise Problem(404, f"no such API route: {shown(path)}")

    post = delete = put = patch = get


class PageHandler(JupyterHandler):
    """The page (``""`` and ``runs/{id}``): ``index.html`` with its base path filled in."""

    auth_resource = RESOURCE
    base: str

    def initialize(self, base: str) -> None:
        self.base = base

    @property
    def content_security_policy(self) -> str:
        return PAGE_CSP

    @web.authenticated
    @authorized
    def get(self, run_id: str | None = None) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Referrer-Policy", "same-origin")
        self.finish(render_index(self.base))


class StaticHandler(JupyterHandler):
    """``static/<name>``: the page's own files (``service/static``)."""

    auth_resource = RESOURCE

    @property
    def content_security_policy(self) -> str:
        return PAGE_CSP

    @web.authenticated
    @authorized
    def get(self, name: str) -> None:
        root = STATIC_DIR.resolve()
        path = (root / name).resolve()
        if name.startswith("index.") or root not in path.parents or not path.is_file():
            raise web.HTTPError(404)
        kind = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}.get(
            path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.set_header("Content-Type", kind + ("; charset=utf-8" if kind.startswith("text/")
                                                else ""))
        self.set_header("Cache-Control", "no-cache")
        self.finish(path.read_bytes())


def handlers(base_url: str, dashboard: Dashboard) -> list[tuple[str, type, dict[str, Any]]]:
    """The routes under ``<base_url>stagewidget/``, for ``web_app.add_handlers``."""
    base = url_path_join(base_url, "stagewidget") + "/"
    api = {"dashboard": dashboard, "base": base}
    run = r"(?P<run_id>[^/]+)"
    return [
        (base + "api/session", SessionHandler, api),
        (base + "api/pipelines", PipelinesHandler, api),
        (base + r"api/pipelines/(?P<name>[^/]+)/runs", StartHandler, api),
        (base + "api/runs", RunsHandler, api),
        (base + f"api/runs/{run}", RunHandler, api),
        (base + f"api/runs/{run}/events", RunEventsHandler, api),
        (base + f"api/runs/{run}/retry", RetryHandler, api),
        (base + "api/events", ListEventsHandler, api),
        (base + r"api/(?P<path>.*)", NotFoundHandler, api),
        (base + r"static/(?P<name>[^/]+)", StaticHandler, {}),
        (base + f"runs/{run}", PageHandler, {"base": base}),
        (base.rstrip("/") + "/?", PageHandler, {"base": base}),
    ]

