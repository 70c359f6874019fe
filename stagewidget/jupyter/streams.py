"""The dashboard's Server-Sent Events: the list's stream and a run's, in the status
service's format, fed by the one poller (``feed``) and the store's pushes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web
from tornado.iostream import StreamClosedError

from ..service.wire import encode_json
from ..status import RunState
from .api import MAX_LIMIT, Api, Problem
from .feed import Inbox, newer

__all__ = ["ListEventsHandler", "RunEventsHandler"]


class _Stream(Api):
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


