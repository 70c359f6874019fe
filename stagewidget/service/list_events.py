"""The list event stream (``GET /api/events``): every change of every matching run."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from .registry import LOST, RunRegistry
from .store import TERMINAL, DamagedRecord, Record, StoreUnavailable
from .wire import encode_json

__all__ = ["MAX_STREAMS", "ListStream"]

# Event streams a service serves at once (this one and runs' own), by default: each holds
# a connection, a file descriptor and a store watch until its client leaves.
MAX_STREAMS = 200


class Api(Protocol):
    """What a stream needs of the HTTP API (``http._Api``)."""

    registry: RunRegistry
    ping_s: float

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a registry/store function, off the event loop if the store blocks."""

    def public(self, status: dict[str, Any]) -> dict[str, Any]:
        """``status`` as clients see it."""


class ListStream:
    """One ``GET /api/events`` stream: every change of every matching run, new ones too.

    The store calls back from its thread for every write of any run; the callback keeps
    only the run's latest record (coalesced per run, so a slow client holds at most one
    pending record per run) and wakes the stream on the event loop. A run is sent when
    it matches the filter, and once more when it stops matching (so a client can drop
    it); out-of-date records (older than what was sent) are skipped.
    """

    SEEN_MAX = 10_000  # runs remembered for ordering and "was shown"; the oldest go first

    def __init__(self, api: Api, state: str | None, pipeline: str | None) -> None:
        self.api = api
        self.state = state
        self.pipeline = pipeline
        self.pending: dict[str, Record] = {}  # run id -> its latest unsent record
        self.changed = asyncio.Event()
        # run id -> (heartbeat_at of the record last handled, shown: it matched then,
        # the state then): to skip older and repeated records, and to find lost runs
        self.seen: OrderedDict[str, tuple[float, bool, str]] = OrderedDict()
        self.unwatch: Callable[[], None] | None = None
        self.first: list[Record] = []
        self.number = 0  # the last event's id

    async def open(self) -> None:
        """Watch every run, then read the runs there are now (a write in between is
        seen twice and sent once)."""
        loop = asyncio.get_running_loop()
        pipeline = self.pipeline

        def on_record(record: Record) -> None:  # a store thread: hand over to the loop
            if pipeline is not None and record.pipeline != pipeline:
                return

            def deliver() -> None:
                self.pending[record.run_id] = record
                self.changed.set()
            try:
                loop.call_soon_threadsafe(deliver)
            except RuntimeError:  # the loop closed: the stream is over
                pass

        store = self.api.registry.store
        self.unwatch = await self.api.call(store.watch_all, on_record)
        try:
            self.first = await self.api.call(store.records, pipeline)
        except BaseException:
            self.close()
            raise
        self.first.sort(key=lambda r: (-r.created_at, r.run_id))  # as GET /api/runs

    def close(self) -> None:
        """Stop watching (idempotent); the stream's end calls it."""
        if self.unwatch is not None:
            self.unwatch()
            self.unwatch = None

    def _event(self, record: Record) -> str | None:
        """The event for ``record``, or None when it is not to be sent."""
        registry = self.api.registry
        before = self.seen.get(record.run_id)
        try:
            status = self.api.public(registry.view(record))
        except DamagedRecord:
            return None
        if before is not None and (record.heartbeat_at < before[0] or (
                record.heartbeat_at == before[0] and status["state"] == before[2])):
            return None  # older than what was handled already, or the same again
        matches = self.state is None or status["state"] == self.state
        self.seen[record.run_id] = (record.heartbeat_at, matches, status["state"])
        self.seen.move_to_end(record.run_id)
        while len(self.seen) > self.SEEN_MAX:
            self.seen.popitem(last=False)
        if not matches and not (before is not None and before[1]):
            return None
        self.number += 1
        data = encode_json(status).decode("ascii")
        return f"id: {self.number}\nevent: status\ndata: {data}\n\n"

    async def events(self) -> AsyncIterator[str]:
        """Each matching run now (newest first), then each change as it comes."""
        try:
            for record in self.first:
                event = self._event(record)
                if event is not None:
                    yield event
            self.first = []
            yield ": synced\n\n"  # the runs there were are sent; changes follow
            while True:
                try:
                    await asyncio.wait_for(self.changed.wait(), self.api.ping_s)
                except TimeoutError:
                    for record in await self._gone_silent():
                        event = self._event(record)
                        if event is not None:
                            yield event
                    yield ": ping\n\n"
                    continue
                self.changed.clear()
                batch, self.pending = self.pending, {}
                for record in batch.values():
                    event = self._event(record)
                    if event is not None:
                        yield event
        finally:
            self.close()

    async def _gone_silent(self) -> list[Record]:
        """Shown unfinished runs whose owner wrote nothing for a while, read again: one
        that turned lost is sent (nothing is written for it)."""
        registry = self.api.registry
        stale_at = registry.clock() - registry.lost_after_s
        run_ids = [run_id for run_id, (heartbeat_at, shown, state) in self.seen.items()
                   if shown and heartbeat_at < stale_at and state not in TERMINAL
                   and state != LOST]
        found = []
        for run_id in run_ids:
            try:
                record = await self.api.call(registry.store.get, run_id)
            except (StoreUnavailable, DamagedRecord):
                continue
            if record is not None and not record.terminal \
                    and registry.state_of(record) == LOST:
                found.append(record)
        return found
