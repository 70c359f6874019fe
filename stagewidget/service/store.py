"""Status stores: where the service keeps run records, in memory or in Redis.

A ``Record`` is a run's latest ``RunStatus.to_dict()`` as JSON text, plus the few fields
the service filters and expires on. Both stores hold that same text, so they give the
same JSON by construction. Stores are synchronous and thread-safe; the HTTP layer calls
a blocking store (Redis) from a worker thread. Every write also notifies the run's
watchers (the Server-Sent Events streams), in this process or, with Redis, in any
process sharing the server.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..errors import DamagedRecord, StoreUnavailable
from ..status import RunState

__all__ = ["STOPPED", "DamagedRecord", "MemoryStore", "Record", "Store", "StoreUnavailable",
           "Watchers", "claim_owner", "describe"]

_log = logging.getLogger("stagewidget.service")

TERMINAL = frozenset(state.value for state in RunState if state.terminal)  # lost included
RECORD_STATES = frozenset(state.value for state in RunState)
STOPPED = " (stopped serving)"  # appended to the owner of runs a closed registry let go


def describe(exc: BaseException) -> str:
    """``Type: message`` of ``exc``, bounded; never raises."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:
        text = type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def claim_owner(value: str) -> str:
    """The run id a claim's value names: its first word (``"<run id> <fingerprint>"``)."""
    return value.partition(" ")[0]


@dataclass(frozen=True, slots=True)
class Record:
    """One run as the store keeps it.

    ``heartbeat_at`` is the owner's wall-clock time of its latest write (an unfinished run
    is written at least once a second); ``owner`` names the process that runs it;
    ``claim`` is the idempotency claim key that names this run, if any: it lives exactly
    as long as the record (each write extends it; removing the run drops it).
    """

    run_id: str
    pipeline: str
    state: str
    created_at: float
    finished_at: float | None
    heartbeat_at: float
    owner: str
    status_json: str
    claim: str = ""

    @property
    def terminal(self) -> bool:
        """True once the run ended (succeeded, failed, cancelled, or lost)."""
        return self.state in TERMINAL

    def status_data(self) -> dict[str, Any]:
        """The run's status JSON, parsed; raise ``DamagedRecord`` if it holds none."""
        try:
            data = json.loads(self.status_json)
        except (ValueError, RecursionError) as exc:
            raise DamagedRecord(f"the record of run {self.run_id!r} holds no valid "
                                f"status JSON ({describe(exc)})") from None
        if not isinstance(data, dict):
            raise DamagedRecord(f"the record of run {self.run_id!r} holds no status "
                                f"object (got JSON {type(data).__name__})")
        return data

    def lost_error(self, silent_s: float, lost_after_s: float, stage: Any) -> dict[str, Any]:
        """The error of a run reported lost after ``silent_s`` without a write, saying why."""
        if self.owner.endswith(STOPPED):
            why = (f"the process running it ({self.owner[:-len(STOPPED)]}) stopped "
                   f"serving it {silent_s:.0f} s ago; its end is unknown")
        else:
            why = (f"the process running it ({self.owner}) has written nothing for "
                   f"{silent_s:.0f} s (limit {lost_after_s:g} s); it probably died")
        return {"type": "stagewidget.RunLost", "message": why, "traceback": "",
                "stage": stage if isinstance(stage, str) else None}

    def fields(self) -> dict[str, str]:
        """The record as flat strings (a Redis hash)."""
        return {k: "" if v is None else str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Record:
        """Rebuild a record from ``fields()``; raise ``DamagedRecord`` on damaged data.

        The JSON text in ``status_json`` is not parsed here (the hot read path parses it
        once, later); a missing field, a bad number or an unknown state is damage.
        """
        try:
            record = cls(run_id=fields["run_id"], pipeline=fields["pipeline"],
                         state=fields["state"], created_at=float(fields["created_at"]),
                         finished_at=float(fields["finished_at"]) if fields["finished_at"]
                         else None, heartbeat_at=float(fields["heartbeat_at"]),
                         owner=fields["owner"], status_json=fields["status_json"],
                         claim=fields.get("claim") or "")
        except KeyError as exc:
            raise DamagedRecord(f"the record of run {_run_id_of(fields)} has no "
                                f"{exc.args[0]!r} field") from None
        except (AttributeError, TypeError, ValueError) as exc:
            raise DamagedRecord(f"the record of run {_run_id_of(fields)} is damaged "
                                f"({exc})") from None
        if record.state not in RECORD_STATES:
            raise DamagedRecord(f"the record of run {record.run_id!r} has an unknown state "
                                f"{record.state[:50]!r}")
        return record


def _run_id_of(fields: Any) -> str:
    run_id = fields.get("run_id") if isinstance(fields, dict) else None
    return repr(run_id[:50]) if isinstance(run_id, str) else "(unknown id)"


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
        """Forget these runs, and the claims that name them."""

    def claim(self, key: str, value: str, ttl_s: float) -> str | None:
        """Store ``value`` under ``key`` unless set; return the value already there, or None."""

    def claimed(self, key: str) -> str | None:
        """The value of claim ``key``, or None if unset or expired."""

    def release(self, key: str, value: str) -> None:
        """Drop claim ``key`` if it still holds ``value`` (else leave it)."""

    def watch(self, run_id: str, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher(record)`` (from a store thread) on each write; return an undo."""

    def watch_all(self, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher(record)`` (from a store thread) on each write of any run, new
        ones and other processes' included; return an undo."""

    def request_cancel(self, run_id: str) -> None:
        """Ask the process that owns ``run_id`` to cancel it."""

    def on_cancel_request(self, callback: Callable[[str], Any]) -> None:
        """Call ``callback(run_id)`` when any process asks for a cancel."""

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""

    def close(self) -> None:
        """Release connections and threads (idempotent)."""


class Watchers:
    """The watchers of each run and of every run, called without the lock held."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_run: dict[str, list[Watcher]] = {}
        self._of_all: tuple[Watcher, ...] = ()  # replaced, never mutated: read without lock

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

    def add_all(self, watcher: Watcher) -> Callable[[], None]:
        """Add ``watcher`` for every run; return the function that removes it."""
        with self._lock:
            self._of_all = (*self._of_all, watcher)

        def remove() -> None:
            with self._lock:
                self._of_all = tuple(w for w in self._of_all if w is not watcher)

        return remove

    def watching_all(self) -> bool:
        """True while a watcher of every run is registered."""
        return bool(self._of_all)

    def run_ids(self) -> frozenset[str]:
        """The runs watched now."""
        with self._lock:
            return frozenset(self._by_run)

    def notify(self, record: Record) -> None:
        """Call the watchers of ``record``'s run; a failing watcher is logged and skipped.

        Even a ``BaseException`` (``SystemExit``, ``Cancelled``) is only logged: the
        calling thread is the store writer's or the Redis listener's, which serve every run.
        """
        with self._lock:
            watchers = tuple(self._by_run.get(record.run_id, ()))
        every = self._of_all  # replaced whole, never changed in place: no lock needed
        if every:
            watchers += every
        for watcher in watchers:
            try:
                watcher(record)
            except BaseException:
                _log.exception("status watcher %r failed", watcher)


class _Claim:
    """A claim of the memory store: its value, when it expires, and its entry in the heap."""

    __slots__ = ("queued_until", "until", "value")

    def __init__(self, value: str, until: float) -> None:
        self.value = value
        self.until = until
        self.queued_until = until  # the expiry its heap entry was pushed with


class MemoryStore:
    """Records in this process's memory, expiring like Redis keys do.

    Claims expire through a heap ordered by expiry: a claim costs O(log n) whatever the
    number of live keys, and expired keys are dropped as time passes them.

    Args:
        clock: wall-clock function for expiry (default ``time.time``).
    """

    name = "memory"
    blocking = False

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()  # guards _records and _claims; handlers run in threads
        self._records: dict[str, tuple[Record, float]] = {}  # run_id -> (record, expires_at)
        self._claims: dict[str, _Claim] = {}
        # (expiry, key) of every claim, earliest first; an entry whose claim was removed
        # or extended meanwhile is stale and skipped (or pushed again) when it comes up.
        self._claim_expiries: list[tuple[float, str]] = []
        self._watchers = Watchers()
        self._cancel_callbacks: list[Callable[[str], Any]] = []

    def put(self, record: Record, *, keep_s: float) -> None:
        """Write ``record``, expiring ``keep_s`` from now, and notify its watchers.

        A record with a ``claim`` extends that claim to expire with it.
        """
        with self._lock:
            until = self._clock() + keep_s
            self._records[record.run_id] = (record, until)
            if record.claim:
                claim = self._claims.get(record.claim)
                if claim is not None and claim_owner(claim.value) == record.run_id:
                    claim.until = until  # its heap entry is moved when it comes up
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
        """Forget these runs, and the claims that name them."""
        with self._lock:
            for run_id in run_ids:
                entry = self._records.pop(run_id, None)
                if entry is not None and entry[0].claim:
                    claim = self._claims.get(entry[0].claim)
                    if claim is not None and claim_owner(claim.value) == run_id:
                        del self._claims[entry[0].claim]

    def claim(self, key: str, value: str, ttl_s: float) -> str | None:
        """Set ``key`` to ``value`` unless already set (and not expired); return the old value."""
        now = self._clock()
        with self._lock:
            self._drop_expired_claims(now)
            old = self._claims.get(key)
            if old is not None:
                return old.value
            until = now + ttl_s
            self._claims[key] = _Claim(value, until)
            heapq.heappush(self._claim_expiries, (until, key))
            return None

    def claimed(self, key: str) -> str | None:
        """The value of claim ``key``, or None if unset or expired."""
        with self._lock:
            claim = self._claims.get(key)
            return claim.value if claim is not None and claim.until > self._clock() else None

    def release(self, key: str, value: str) -> None:
        """Drop claim ``key`` if it still holds ``value``."""
        with self._lock:
            claim = self._claims.get(key)
            if claim is not None and claim.value == value:
                del self._claims[key]

    def claim_count(self) -> int:
        """How many claims are held (expired ones not yet dropped included)."""
        with self._lock:
            return len(self._claims)

    def _drop_expired_claims(self, now: float) -> None:
        """With the lock held: drop the claims whose expiry has passed."""
        heap = self._claim_expiries
        while heap and heap[0][0] <= now:
            queued_until, key = heapq.heappop(heap)
            claim = self._claims.get(key)
            if claim is None or claim.queued_until != queued_until:
                continue  # removed, or re-claimed with an entry of its own
            if claim.until <= now:
                del self._claims[key]
            else:  # extended meanwhile: it comes up again at its new expiry
                claim.queued_until = claim.until
                heapq.heappush(heap, (claim.until, key))

    def watch(self, run_id: str, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher(record)`` from the writing thread on each write of ``run_id``."""
        return self._watchers.add(run_id, watcher)

    def watch_all(self, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher(record)`` from the writing thread on each write of any run."""
        return self._watchers.add_all(watcher)

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
