"""Status stores: where the service keeps run records, in memory or in Redis.

A ``Record`` is a run's latest ``RunStatus.to_dict()`` as JSON text, plus the few fields
the service filters and expires on. Both stores hold that same text, so they give the
same JSON by construction. Stores are synchronous and thread-safe; the HTTP layer calls
a blocking store (Redis) from a worker thread. Every write also notifies the run's
watchers (the Server-Sent Events streams), in this process or, with Redis, in any
process sharing the server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

__all__ = ["MemoryStore", "Record", "Store", "StoreUnavailable", "Watchers"]

_log = logging.getLogger("stagewidget.service")

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class StoreUnavailable(RuntimeError):
    """The store cannot be reached (Redis down); the request may be retried later."""


@dataclass(frozen=True, slots=True)
class Record:
    """One run as the store keeps it.

    ``heartbeat_at`` is the owner's wall-clock time of its latest write (a running run is
    written at least once a second); ``owner`` names the process that runs it.
    """

    run_id: str
    pipeline: str
    state: str
    created_at: float
    finished_at: float | None
    heartbeat_at: float
    owner: str
    status_json: str

    @property
    def terminal(self) -> bool:
        """True once the run ended (succeeded, failed or cancelled)."""
        return self.state in TERMINAL

    def fields(self) -> dict[str, str]:
        """The record as flat strings (a Redis hash)."""
        return {k: "" if v is None else str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Record:
        """Rebuild a record from ``fields()``; raise ``ValueError`` on damaged data."""
        try:
            return cls(run_id=fields["run_id"], pipeline=fields["pipeline"],
                       state=fields["state"], created_at=float(fields["created_at"]),
                       finished_at=float(fields["finished_at"]) if fields["finished_at"]
                       else None, heartbeat_at=float(fields["heartbeat_at"]),
                       owner=fields["owner"], status_json=fields["status_json"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"damaged run record: {exc!r}") from None


Watcher = Callable[[Record], Any]


class Store(Protocol):
    """What the service needs from a store. Every method may raise ``StoreUnavailable``."""

    name: str
    blocking: bool  # True: call from a worker thread, never on the event loop

    def put(self, record: Record, *, keep_s: float) -> None:
        """Write ``record`` (expiring ``keep_s`` after its last write) and notify watchers."""

    def get(self, run_id: str) -> Record | None:
        """The run's record, or None if unknown or expired."""

    def records(self, pipeline: str | None = None) -> list[Record]:
        """Every record (of ``pipeline``), in no particular order."""

    def remove(self, run_ids: list[str]) -> None:
        """Forget these runs."""

    def claim(self, key: str, value: str, ttl_s: float) -> str | None:
        """Store ``value`` under ``key`` unless set; return the value already there, or None."""

    def watch(self, run_id: str, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher(record)`` (from a store thread) on each write; return an undo."""

    def request_cancel(self, run_id: str) -> None:
        """Ask the process that owns ``run_id`` to cancel it."""

    def on_cancel_request(self, callback: Callable[[str], Any]) -> None:
        """Call ``callback(run_id)`` when any process asks for a cancel."""

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""

    def close(self) -> None:
        """Release connections and threads (idempotent)."""


class Watchers:
    """The watchers of each run, called without the lock held."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_run: dict[str, list[Watcher]] = {}

    def add(self, run_id: str, watcher: Watcher) -> Callable[[], None]:
        """Add ``watcher`` for ``run_id``; return the function that removes it."""
        with self._lock:
            self._by_run.setdefault(run_id, []).append(watcher)

        def remove() -> None:
            with self._lock:
                watchers = self._by_run.get(run_id, [])
                if watcher in watchers:
                    watchers.remove(watcher)
                if not watchers:
                    self._by_run.pop(run_id, None)

        return remove

    def notify(self, record: Record) -> None:
        """Call the watchers of ``record``'s run; a failing watcher is logged and skipped."""
        with self._lock:
            watchers = tuple(self._by_run.get(record.run_id, ()))
        for watcher in watchers:
            try:
                watcher(record)
            except Exception:
                _log.exception("status watcher %r failed", watcher)


class MemoryStore:
    """Records in this process's memory, expiring like Redis keys do.

    Args:
        clock: wall-clock function for expiry (default ``time.time``).
    """

    name = "memory"
    blocking = False

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()  # guards _records and _claims; handlers run in threads
        self._records: dict[str, tuple[Record, float]] = {}  # run_id -> (record, expires_at)
        self._claims: dict[str, tuple[str, float]] = {}
        self._watchers = Watchers()
        self._cancel_callbacks: list[Callable[[str], Any]] = []

    def put(self, record: Record, *, keep_s: float) -> None:
        """Write ``record``, expiring ``keep_s`` from now, and notify its watchers."""
        with self._lock:
            self._records[record.run_id] = (record, self._clock() + keep_s)
        self._watchers.notify(record)

    def get(self, run_id: str) -> Record | None:
        """The run's record, or None if unknown or expired."""
        with self._lock:
            entry = self._records.get(run_id)
            if entry is None:
                return None
            if entry[1] <= self._clock():
                del self._records[run_id]
                return None
            return entry[0]

    def records(self, pipeline: str | None = None) -> list[Record]:
        """Every live record (of ``pipeline``); expired ones are dropped on the way."""
        now = self._clock()
        with self._lock:
            expired = [rid for rid, (_, until) in self._records.items() if until <= now]
            for run_id in expired:
                del self._records[run_id]
            return [r for r, _ in self._records.values()
                    if pipeline is None or r.pipeline == pipeline]

    def remove(self, run_ids: list[str]) -> None:
        """Forget these runs."""
        with self._lock:
            for run_id in run_ids:
                self._records.pop(run_id, None)

    def claim(self, key: str, value: str, ttl_s: float) -> str | None:
        """Set ``key`` to ``value`` unless already set (and not expired); return the old value."""
        now = self._clock()
        with self._lock:
            old = self._claims.get(key)
            if old is not None and old[1] > now:
                return old[0]
            self._claims = {k: v for k, v in self._claims.items() if v[1] > now}
            self._claims[key] = (value, now + ttl_s)
            return None

    def watch(self, run_id: str, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher(record)`` from the writing thread on each write of ``run_id``."""
        return self._watchers.add(run_id, watcher)

    def request_cancel(self, run_id: str) -> None:
        """Pass a cancel request to this process's registry."""
        for callback in tuple(self._cancel_callbacks):
            callback(run_id)

    def on_cancel_request(self, callback: Callable[[str], Any]) -> None:
        """Register ``callback(run_id)`` for cancel requests."""
        self._cancel_callbacks.append(callback)

    def ping(self) -> None:
        """Always answers: memory is here."""

    def close(self) -> None:
        """Nothing to release."""
