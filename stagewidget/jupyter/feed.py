"""The Jupyter dashboard's reads of the run history: one thread, one poller for all streams.

The database is read in one worker thread (``stagewidget-jupyter``), never on the event
loop. While a stream is open, one poller reads what was written since its last look
every ``POLL_S`` and hands it to each stream's ``Inbox``: N open pages cost one query a
round, not N.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..durable.reader import HistoryReader, Seen
from ..errors import ConfigError
from ..status import RunState
from .shared import SharedRuns

__all__ = ["PING_S", "POLL_S", "Dashboard", "Inbox", "newer", "status_json"]

_log = logging.getLogger("stagewidget.jupyter")
T = TypeVar("T")

POLL_S = 0.5  # how often the history is read for changes while a stream is open
PING_S = 15.0  # a comment line this often keeps idle streams (and proxies) open


LOST_MESSAGE = ("the process that ran it ended before the run did (a kernel restarted, "
                "shut down or killed); its end is unknown")


def status_json(seen: Seen) -> dict[str, Any]:
    """A recorded run's status JSON; a lost run says why, as the status service's do."""
    status = seen[1].to_dict()
    if status["state"] == RunState.LOST.value and status["error"] is None:
        status["error"] = {"type": "stagewidget.RunLost", "message": LOST_MESSAGE,
                           "traceback": "", "stage": status["current_stage"]}
    return status


def newer(status: dict[str, Any], than: dict[str, Any] | None) -> bool:
    """Whether ``status`` is a later read of its run than ``than`` (a same-time read
    counts: a run read again may have turned lost)."""
    return than is None or status["updated_at"] >= than["updated_at"]


class Inbox:
    """What one stream has not sent yet: the latest status JSON of each run (a slow
    client holds at most one per run), and an event set when something came."""

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id
        self.pending: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()

    def put(self, found: list[Seen]) -> None:
        """Keep each run's latest read of the history (the event loop's thread)."""
        self.put_statuses([status_json(seen) for seen in found])

    def put_statuses(self, found: list[dict[str, Any]]) -> None:
        """Keep each run's latest status JSON (the event loop's thread)."""
        for status in found:
            run_id = status["run_id"]
            if self.run_id is not None and run_id != self.run_id:
                continue
            if newer(status, self.pending.get(run_id)):
                self.pending[run_id] = status
        if self.pending:
            self.changed.set()

    def take(self) -> list[dict[str, Any]]:
        """What came, oldest update first; the inbox is empty after."""
        found = sorted(self.pending.values(), key=lambda s: s["updated_at"])
        self.pending = {}
        self.changed.clear()
        return found


class Dashboard:
    """The server's one reader of the run history and its one poller for every stream.

    The database is read in one worker thread (``stagewidget-jupyter``), never on the
    event loop, one call at a time and in the order asked. While a stream is open, the
    poller reads what was written since its last look every ``poll_s`` and hands it to
    every stream's ``Inbox``: N open pages cost one query each round, not N.
    """

    def __init__(self, reader: HistoryReader | None = None, *, shared: SharedRuns | None = None,
                 poll_s: float = POLL_S, ping_s: float = PING_S) -> None:
        self.reader = reader if reader is not None else HistoryReader()
        self.shared = shared  # a status-service store read too, if configured
        self.poll_s = poll_s
        self.ping_s = ping_s
        # the database thread: started by the first call, ended once no call is left and
        # no stream is open (a plain server extension gets no "server stops" hook)
        self._executor: ThreadPoolExecutor | None = None
        self._calls = 0  # calls submitted and not finished (counted on the event loop)
        self._inboxes: set[Inbox] = set()
        self._poller: asyncio.Task[None] | None = None

    def close(self) -> None:
        """Close the store connection and its listener thread, if a store is read (a plain
        server extension gets no stop hook: whoever ends the server may call this)."""
        if self.shared is not None:
            self.shared.close()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the database thread, after every call asked before it."""
        return await self._submit(fn, *args)

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="stagewidget-jupyter")
        self._calls += 1
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: asyncio.Future[Any]) -> None:  # the event loop's thread
        self._calls -= 1
        if not self._calls and not self._inboxes and self._executor is not None:
            self._executor.shutdown(wait=False)  # idle: its thread ends now
            self._executor = None

    def subscribe(self, inbox: Inbox) -> Callable[[], None]:
        """Deliver every change from now on to ``inbox``; return what unsubscribes.

        A read the caller asks for (``call``) after this sees every write the inbox
        does not: the poller's cursor is set first (the database thread keeps order).
        """
        self._inboxes.add(inbox)
        if self._poller is None:
            self._submit(self._restart)
            self._poller = asyncio.get_running_loop().create_task(self._poll())

        def unsubscribe() -> None:
            self._inboxes.discard(inbox)
            if not self._inboxes and self._poller is not None:
                self._poller.cancel()  # not left asleep when the server stops
                self._poller = None
            if not self._inboxes and not self._calls and self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None
        return unsubscribe

    def _restart(self) -> None:
        try:
            self.reader.restart()
        except (sqlite3.Error, ConfigError) as err:  # changes() starts it again
            _log.warning("cannot read the run history %s: %s", self.reader.path, err)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                found = await self.call(self.reader.changes)
            except (sqlite3.Error, ConfigError) as err:
                _log.warning("cannot read the run history %s: %s", self.reader.path, err)
                continue
            for inbox in list(self._inboxes):
                inbox.put(found)
