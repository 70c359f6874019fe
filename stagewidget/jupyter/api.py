"""The dashboard API's handler base: Jupyter's authentication and authorizer, problems
as ``application/problem+json``, and the reads of the history and the store.

Every handler is behind Jupyter's authentication (``@web.authenticated``) and its
authorizer (``@authorized``, resource ``kernels``: the runs are the kernels' work, and a
Cancel stops work in one); state-changing requests need Jupyter's XSRF token (tornado
checks it).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..durable.reader import Seen
from ..errors import ConfigError, InvalidTransition, RunNotFound, StoreUnavailable
from ..service.openapi import MAX_LIMIT
from ..service.wire import encode_json
from ..status import RunState
from .feed import Dashboard, newer, status_json

__all__ = ["MAX_LIMIT", "RESOURCE", "STATES", "Api", "Problem", "shown"]

T = TypeVar("T")
_log = logging.getLogger("stagewidget.jupyter")

RESOURCE = "kernels"
STATES = tuple(s.value for s in RunState)
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


class Api(APIHandler):
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
                               f"{shown(state)})")
        return state, self.get_query_argument("pipeline", None) or None

    def run_url(self, run_id: str) -> str:
        return f"{self.base}api/runs/{run_id}"


def shown(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


