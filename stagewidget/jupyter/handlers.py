"""The dashboard's tornado handlers: the page, its static files and the read API.

Every handler is behind Jupyter's authentication (``@web.authenticated``) and its
authorizer (``@authorized``, resource ``kernels``: the runs are the kernels' work, and a
Cancel stops work in one); state-changing requests need Jupyter's XSRF token (tornado
checks it). The API speaks as the status service does: a run's status JSON, Server-Sent
Events in the same format, ``application/problem+json`` errors with a ``detail``.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import sqlite3
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urlencode

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.iostream import StreamClosedError

from ..durable.reader import Seen
from ..errors import ConfigError, InvalidTransition, RunNotFound, StoreUnavailable
from ..service.openapi import MAX_LIMIT, MAX_OFFSET, SUMMARY_KEYS
from ..service.pages import STATIC_DIR, render_index
from ..service.wire import ascii_int, encode_json
from ..status import RunState
from .feed import Dashboard, Inbox, newer, status_json

__all__ = ["Dashboard", "handlers"]

T = TypeVar("T")
_log = logging.getLogger("stagewidget.jupyter")

RESOURCE = "kernels"
STATES = tuple(s.value for s in RunState)
CSRF_HEADER = "X-XSRFToken"
PAGE_CSP = ("default-src 'self'; frame-ancestors 'self'; form-action 'self'; "
            "base-uri 'none'")
NOT_RETRYABLE = ("a run recorded by a kernel can be retried only in that kernel "
                 "(run.retry() there); a run published to a store, only through the "
                 "status service that runs it")


def _problem_body(status: int, detail: str, instance: str) -> bytes:
    phrase = HTTPStatus(status).phrase
    slug = phrase.lower().replace(" ", "-")
    return encode_json({"type": f"urn:stagewidget:problem:{slug}", "title": phrase,
                        "status": status, "detail": detail, "instance": instance})


class Problem(web.HTTPError):
    """An error answered as ``application/problem+json`` with ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status, reason=HTTPStatus(status).phrase)
        self.detail = detail


class _Api(APIHandler):
    """An API handler of the dashboard: JSON out, problems for errors."""

    auth_resource = RESOURCE
    dashboard: Dashboard
    base: str

    def initialize(self, dashboard: Dashboard, base: str) -> None:
        self.dashboard = dashboard
        self.base = base

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, Problem):
            detail = error.detail
        elif isinstance(error, web.HTTPError) and error.log_message:
            detail = error.log_message % error.args if error.args else error.log_message
        else:
            detail = HTTPStatus(status_code).phrase.lower()
        self.finish(_problem_body(status_code, detail, self.request.path),
                    set_content_type="application/problem+json")

    def reply(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(encode_json(value))

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """A database call, its failures as problems."""
        try:
            return await self.dashboard.call(fn, *args)
        except RunNotFound as err:
            raise Problem(404, str(err).strip("'\"")) from None
        except InvalidTransition as err:
            raise Problem(409, str(err)) from None
        except ConfigError as err:
            raise Problem(500, str(err)) from None
        except sqlite3.Error as err:
            raise Problem(503, f"cannot read the run history "
                          f"{str(self.dashboard.reader.path)!r}: {err}") from None

    async def in_store(self, fn: Callable[..., T], *args: Any) -> T:
        """A call of the configured store, in a worker thread, its failures as problems."""
        shared = self.dashboard.shared
        assert shared is not None
        try:
            return await asyncio.to_thread(fn, *args)
        except StoreUnavailable as err:
            raise Problem(503, f"the run store {shared.url} is unavailable: {err}") from None
        except InvalidTransition as err:
            raise Problem(409, str(err)) from None

    async def latest(self, run_id: str) -> dict[str, Any] | None:
        """The run's newest status JSON, from the history or the store; a store down is
        a 503 only when the history does not know the run."""
        seen = await self.read(self.dashboard.reader.run, run_id)
        status = None if seen is None else status_json(seen)
        if self.dashboard.shared is not None:
            try:
                stored = await self.in_store(self.dashboard.shared.get, run_id)
            except Problem:
                if status is None:
                    raise
                stored = None
            if stored is not None and newer(stored, status):
                status = stored
        return status

    async def found(self, run_id: str) -> dict[str, Any]:
        status = await self.latest(run_id)
        if status is None:
            raise Problem(404, f"no run with id {run_id!r} in the run history "
                               f"{str(self.dashboard.reader.path)!r}{self.store_named()}")
        return status

    def store_named(self) -> str:
        shared = self.dashboard.shared
        return "" if shared is None else f" or the run store {shared.url}"

    async def statuses(self, state: str | None, pipeline: str | None, upto: int
                       ) -> tuple[list[dict[str, Any]], int]:
        """The newest ``upto`` runs' status JSON, one per run (the newer of the history's
        and the store's), and how many match in all; with the store down, the history's
        alone (logged). Only ``upto`` history runs are read whole, however long it is."""
        found, total = await self.read(self._history, state, pipeline, upto)
        chosen = {status["run_id"]: status for status in map(status_json, found)}
        shared = self.dashboard.shared
        if shared is not None:
            try:
                stored = await self.in_store(shared.runs, pipeline)
            except Problem as err:
                _log.warning("listing the run history only: %s", err.detail)
                stored = []
            recorded = await self.read(self.dashboard.reader.by_ids,
                                       [status["run_id"] for status in stored])
            for status in stored:  # the store's newer status may add, replace or drop one
                seen = recorded.get(status["run_id"])
                before = None if seen is None else status_json(seen)
                latest = status if newer(status, before) else before
                assert latest is not None
                counted = before is not None and (state is None or before["state"] == state)
                matches = state is None or latest["state"] == state
                total += matches - counted
                if matches:
                    chosen[status["run_id"]] = latest
                else:
                    chosen.pop(status["run_id"], None)
        ordered = sorted(chosen.values(), key=lambda s: (-s["created_at"], s["run_id"]))
        return ordered[:upto], total

    def _history(self, state: str | None, pipeline: str | None, upto: int
                 ) -> tuple[list[Seen], int]:
        reader = self.dashboard.reader
        return (reader.runs(state=state, pipeline=pipeline, limit=upto),
                reader.count(state=state, pipeline=pipeline))

    def filters(self) -> tuple[str | None, str | None]:
        state = self.get_query_argument("state", None) or None
        if state is not None and state not in STATES:
            raise Problem(400, f"state must be one of {', '.join(STATES)} (got "
                               f"{_shown(state)})")
        return state, self.get_query_argument("pipeline", None) or None

    def run_url(self, run_id: str) -> str:
        return f"{self.base}api/runs/{run_id}"


def _shown(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


class SessionHandler(_Api):
    """``GET api/session``: Jupyter authenticated the user; the page's XSRF token."""

    @web.authenticated
    @authorized
    def get(self) -> None:
        self.reply({"token_required": False, "session": True, "login": False,
                    "csrf_token": self.xsrf_token.decode("ascii"),
                    "csrf_header": CSRF_HEADER})


class PipelinesHandler(_Api):
    """``GET api/pipelines``: none here (runs are started in notebooks)."""

    @web.authenticated
    @authorized
    def get(self) -> None:
        self.reply([])


class RunsHandler(_Api):
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
                               f"ASCII digits (got {_shown(raw)})")
        return value


class RunHandler(_Api):
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


class RetryHandler(_Api):
    """``POST api/runs/{id}/retry``: refused (409): only the owning kernel can retry."""

    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        await self.found(run_id)
        raise Problem(409, NOT_RETRYABLE)


class StartHandler(_Api):
    """``POST api/pipelines/{name}/runs``: refused (404): no pipeline is served here."""

    @web.authenticated
    @authorized
    def post(self, name: str) -> None:
        raise Problem(404, f"no pipeline named {_shown(name)} is served here: the Jupyter "
                           "dashboard shows the runs kernels record and starts none")


class _Stream(_Api):
    """A Server-Sent Events reply, in the status service's format."""

    number = 0
    closed: asyncio.Event

    def on_connection_close(self) -> None:
        self.closed.set()

    def begin(self) -> None:
        self.closed = asyncio.Event()
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    def event(self, status: dict[str, Any]) -> None:
        self.number += 1
        data = encode_json(status).decode("ascii")
        self.write(f"id: {self.number}\nevent: status\ndata: {data}\n\n")

    async def wait(self, inbox: Inbox) -> list[dict[str, Any]] | None:
        """The next changes, [] after ``ping_s`` without any (a ping is due), None once
        the client went away."""
        changed = asyncio.ensure_future(inbox.changed.wait())
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            await asyncio.wait({changed, closed}, timeout=self.dashboard.ping_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            closed.cancel()
        if self.closed.is_set():
            return None
        return inbox.take()

    async def gone_silent(self, run_ids: set[str]) -> list[dict[str, Any]]:
        """The store's runs among ``run_ids`` that read lost now (nothing is written for
        a run whose owner died, so the store's are read again, as the service does)."""
        shared = self.dashboard.shared
        if shared is None:
            return []
        lost: list[dict[str, Any]] = []
        for run_id in list(run_ids):
            try:
                status = await self.in_store(shared.get, run_id)
            except Problem:
                return lost  # the store is down: the next ping tries again
            if status is not None and status["state"] == RunState.LOST.value:
                lost.append(status)
        return lost

    async def stream(self, inbox: Inbox,
                     first: Callable[[], Awaitable[list[dict[str, Any]]]],
                     send: Callable[[dict[str, Any]], bool]) -> None:
        """Subscribe ``inbox`` (to the history and the store), send ``first()``, then each
        change; ``send`` writes one and says whether the stream is over."""
        unsubscribe = self.dashboard.subscribe(inbox)
        unwatch: Callable[[], None] | None = None
        try:
            shared = self.dashboard.shared
            if shared is not None:
                loop = asyncio.get_running_loop()

                def on_status(status: dict[str, Any]) -> None:  # a store thread
                    try:
                        loop.call_soon_threadsafe(inbox.put_statuses, [status])
                    except RuntimeError:  # the loop closed: the stream is over
                        pass
                unwatch = await asyncio.to_thread(shared.watch, on_status)
            live: set[str] = set()  # runs sent unfinished: a silent owner's may turn lost

            def sent(status: dict[str, Any]) -> bool:
                if RunState(status["state"]).terminal:
                    live.discard(status["run_id"])
                else:
                    live.add(status["run_id"])
                return send(status)

            for status in await first():
                if sent(status):
                    await self.flush()
                    return
            self.write(": synced\n\n")
            await self.flush()
            while True:
                found = await self.wait(inbox)
                if found is None:
                    return
                if not found:
                    found = await self.gone_silent(live)
                    self.write(": ping\n\n")
                for status in found:
                    if sent(status):
                        await self.flush()
                        return
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            unsubscribe()
            if unwatch is not None:
                unwatch()


class ListEventsHandler(_Stream):
    """``GET api/events?state=&pipeline=``: every change of every matching run, new runs
    too; a run that stops matching is sent once more (so the page can drop it)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        state, pipeline = self.filters()
        self.begin()
        # run id -> (updated_at, state, matched) of what was handled last
        shown: dict[str, tuple[float, str, bool]] = {}

        def send(status: dict[str, Any]) -> bool:
            if pipeline is not None and status["pipeline"] != pipeline:
                return False
            before = shown.get(status["run_id"])
            if before is not None and (status["updated_at"] < before[0] or (
                    status["updated_at"] == before[0] and status["state"] == before[1])):
                return False  # read already (the first batch and the feeds overlap)
            matches = state is None or status["state"] == state
            shown[status["run_id"]] = (status["updated_at"], status["state"], matches)
            if matches or (before is not None and before[2]):
                self.event(status)
            return False

        async def first() -> list[dict[str, Any]]:
            return (await self.statuses(state, pipeline, MAX_LIMIT))[0]

        await self.stream(Inbox(), first, send)


class RunEventsHandler(_Stream):
    """``GET api/runs/{id}/events``: the run's status now, then each change, then
    ``event: end`` when it has ended."""

    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        first = await self.found(run_id)  # 404 before streaming
        self.begin()
        sent: list[dict[str, Any] | None] = [None]

        def send(status: dict[str, Any]) -> bool:
            before = sent[0]
            if before is not None and (status["updated_at"] < before["updated_at"] or (
                    status["updated_at"] == before["updated_at"]
                    and status["state"] == before["state"])):
                return False  # sent already
            sent[0] = status
            self.event(status)
            if RunState(status["state"]).terminal:
                end = encode_json({"state": status["state"]}).decode("ascii")
                self.write(f"event: end\ndata: {end}\n\n")
                return True
            return False

        async def again() -> list[dict[str, Any]]:  # the first read, or a later one
            status = await self.latest(run_id)
            return [status if status is not None and newer(status, first) else first]

        await self.stream(Inbox(run_id), again, send)


class NotFoundHandler(_Api):
    """Any other ``api/...`` path: a 404 problem."""

    @web.authenticated
    @authorized
    def get(self, path: str) -> None:
        raise Problem(404, f"no such API route: {_shown(path)}")

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

