"""The Redis store: several service processes and notebooks share one view of all runs.

Layout, under a key prefix (default ``stagewidget``):

- ``<prefix>:run:<id>``: a hash per run (the ``Record`` fields), expiring ``keep_s``
  after its latest write: a running run's owner rewrites it at least once a second.
- ``<prefix>:runs``: a sorted set of run ids by creation time, for listing; members
  whose hash expired are dropped when seen. It expires with the longest-lived run.
- ``<prefix>:claim:<key>``: idempotency keys (``SET NX PX``); the record of the run a
  claim names carries the key in its ``claim`` field, so each write extends the claim
  with the record and removing the run deletes it.
- Channel ``<prefix>:run:<id>``: every write is published, so watchers need no polling;
  channel ``<prefix>:cancel`` carries cancel requests to the process running the run.
- ``<prefix>:cancel:<id>``: the same request, kept (``CANCEL_KEEP_S``) until the owner
  next writes the run: a publish is lost while the owner's listener reconnects (Redis
  restarted), the flag is not. The owner writes each unfinished run at least once a second.

Every key is written with an expiry, so nothing outlives the retention time.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .store import DamagedRecord, Record, StoreUnavailable, Watcher, Watchers

__all__ = ["RedisStore"]

_log = logging.getLogger("stagewidget.service")

_RECONNECT_S = (0.1, 0.2, 0.5, 1.0)
CANCEL_KEEP_S = 600.0  # an unanswered cancel flag expires (its run's owner is gone)

# KEYS: the index, then the runs' hashes; ARGV: the claim key prefix, then the run ids.
# Each run's claim is deleted only while it still names that run.
_REMOVE = """
for i = 2, #KEYS do
  local run_id = ARGV[i]
  local ok, claim = pcall(redis.call, 'HGET', KEYS[i], 'claim')
  if ok and claim then
    local name = ARGV[1] .. claim
    local value = redis.call('GET', name)
    if value == run_id or (value and string.sub(value, 1, #run_id + 1) == run_id .. ' ') then
      redis.call('DEL', name)
    end
  end
  redis.call('DEL', KEYS[i])
  redis.call('ZREM', KEYS[1], run_id)
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisStore:
    """Records in a Redis server (5 or later; ``EXPIRE ... GT`` needs 7).

    Args:
        url: e.g. ``redis://127.0.0.1:6379/0``.
        prefix: the key and channel prefix, so several deployments can share a server.
        timeout_s: socket timeout; a request finds Redis down within about this time.
    """

    name = "redis"
    blocking = True

    def __init__(self, url: str, *, prefix: str = "stagewidget", timeout_s: float = 2.0) -> None:
        try:
            import redis
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry
        except ImportError:
            raise ImportError("the Redis store needs the redis package: "
                              "pip install 'stagewidget[service]'") from None
        self._redis_errors = (redis.ConnectionError, redis.TimeoutError,
                              redis.exceptions.BusyLoadingError)
        self._response_error = redis.ResponseError  # e.g. a run key holding a string
        # Few, quick retries: a request should say 503 soon, not hang while Redis is down.
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2), decode_responses=True)
        self.url = url
        self.prefix = prefix
        self._timeout_s = timeout_s
        self._index = f"{prefix}:runs"
        self._cancel_channel = f"{prefix}:cancel"
        self._watchers = Watchers()
        self._cancel_callbacks: list[Callable[[str], Any]] = []
        self._async_client: Any = None  # redis.asyncio, made on the server's loop
        self._listener: threading.Thread | None = None
        self._listener_lock = threading.Lock()  # starts the listener thread once
        self._stop = threading.Event()
        self._remove_script = self._client.register_script(_REMOVE)
        self._release_script = self._client.register_script(_RELEASE)

    def _key(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}"

    def _cancel_key(self, run_id: str) -> str:
        return f"{self.prefix}:cancel:{run_id}"

    def _claim_key(self, key: str) -> str:
        return f"{self.prefix}:claim:{key}"

    def _parse(self, run_id: str, fields: Any) -> Record | None:
        """The record from a run hash's fields (None if absent); ``DamagedRecord`` if bad."""
        if isinstance(fields, self._response_error):
            raise DamagedRecord(f"the record of run {run_id!r} cannot be read ({fields})")
        if not fields:
            return None
        record = Record.from_fields(fields)
        if record.run_id != run_id:
            raise DamagedRecord(f"the record of run {run_id!r} names another run "
                                f"({record.run_id[:50]!r})")
        return record

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._redis_errors as exc:
            raise StoreUnavailable(f"Redis at {self.url} is not answering ({exc})") from exc

    # -- Store protocol ---------------------------------------------------------------
    def put(self, record: Record, *, keep_s: float) -> None:
        """Write the run's hash and index entry with expiries, and publish the record."""
        ttl_ms = max(int(keep_s * 1000), 1)
        # redis types hset's mapping keys invariantly (Mapping[FieldT, ...]): str keys fit.
        fields: Mapping[Any, Any] = record.fields()
        key = self._key(record.run_id)
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(key, mapping=fields)
        pipe.pexpire(key, ttl_ms)
        pipe.zadd(self._index, {record.run_id: record.created_at})
        pipe.pexpire(self._index, ttl_ms, nx=True)  # a new index gets an expiry...
        pipe.pexpire(self._index, ttl_ms, gt=True)  # ...which only ever grows
        if record.claim:  # the claim lives as long as its run's record
            pipe.pexpire(self._claim_key(record.claim), ttl_ms)
        pipe.publish(key, json.dumps(fields))
        cancel_key = self._cancel_key(record.run_id)
        if not record.terminal:
            pipe.get(cancel_key)  # a cancel asked for meanwhile, taken in this transaction
        pipe.delete(cancel_key)
        replies = self._call(pipe.execute)
        if not record.terminal and replies[-2] is not None:
            self._cancel_requested(record.run_id)  # its publish may have been missed

    def get(self, run_id: str) -> Record | None:
        """The run's record, or None if unknown or expired."""
        try:
            fields = self._call(self._client.hgetall, self._key(run_id))
        except self._response_error as exc:
            fields = exc
        return self._parse(run_id, fields)

    async def aget(self, run_id: str) -> Record | None:
        """``get()`` for the event loop: the hot read path, without a worker thread."""
        if self._async_client is None:
            import redis.asyncio

            self._async_client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=self._timeout_s,
                socket_connect_timeout=self._timeout_s, decode_responses=True)
        try:
            fields = await self._async_client.hgetall(self._key(run_id))
        except self._redis_errors as exc:
            raise StoreUnavailable(f"Redis at {self.url} is not answering ({exc})") from exc
        except self._response_error as exc:
            fields = exc
        return self._parse(run_id, fields)

    def records(self, pipeline: str | None = None) -> list[Record]:
        """Every live record (of ``pipeline``); index entries of expired runs are dropped."""
        run_ids = self._call(self._client.zrange, self._index, 0, -1)
        if not run_ids:
            return []
        pipe = self._client.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hgetall(self._key(run_id))
        found = self._call(pipe.execute, raise_on_error=False)  # one bad key fails no list
        records, gone = [], []
        for run_id, fields in zip(run_ids, found):
            try:
                record = self._parse(run_id, fields)
            except DamagedRecord as exc:
                _log.warning("skipping a damaged run record in Redis: %s", exc)
                continue
            if record is None:
                gone.append(run_id)
            elif pipeline is None or record.pipeline == pipeline:
                records.append(record)
        if gone:
            self._call(self._client.zrem, self._index, *gone)
        return records

    def remove(self, run_ids: list[str]) -> None:
        """Delete these runs' hashes, index entries and the claims naming them."""
        if not run_ids:
            return
        self._call(self._remove_script, keys=[self._index, *map(self._key, run_ids)],
                   args=[self._claim_key(""), *run_ids])

    def claim(self, key: str, value: str, ttl_s: float) -> str | None:
        """``SET key value NX PX ttl``; return the value already there, or None."""
        name = self._claim_key(key)
        ttl_ms = max(int(ttl_s * 1000), 1)
        while True:
            if self._call(self._client.set, name, value, nx=True, px=ttl_ms):
                return None
            old: str | None = self._call(self._client.get, name)  # decode_responses: str
            if old is not None:
                return old  # else it expired in between: try again

    def claimed(self, key: str) -> str | None:
        """The value of claim ``key``, or None if unset or expired."""
        value: str | None = self._call(self._client.get, self._claim_key(key))
        return value

    def release(self, key: str, value: str) -> None:
        """Delete claim ``key`` if it still holds ``value`` (atomically)."""
        self._call(self._release_script, keys=[self._claim_key(key)], args=[value])

    def watch(self, run_id: str, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher(record)`` from the listener thread on each published write."""
        undo = self._watchers.add(run_id, watcher)
        self._start_listener()
        return undo

    def watch_all(self, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher(record)`` from the listener thread on each published write of
        any run (the listener subscribes to every run's channel anyway)."""
        undo = self._watchers.add_all(watcher)
        self._start_listener()
        return undo

    def request_cancel(self, run_id: str) -> None:
        """Publish a cancel request (the owning process's listener acts on it at once) and
        flag it (its next write of the run takes it, if the publish was missed)."""
        pipe = self._client.pipeline(transaction=True)
        pipe.set(self._cancel_key(run_id), "1", px=int(CANCEL_KEEP_S * 1000))
        pipe.publish(self._cancel_channel, run_id)
        self._call(pipe.execute)

    def on_cancel_request(self, callback: Callable[[str], Any]) -> None:
        """Call ``callback(run_id)`` from the listener thread for each cancel request."""
        self._cancel_callbacks.append(callback)
        self._start_listener()

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless Redis answers."""
        self._call(self._client.ping)

    def close(self) -> None:
        """Stop the listener thread and close the connections (idempotent)."""
        self._stop.set()
        listener = self._listener
        if listener is not None:
            listener.join(5)
        self._client.close()

    # -- listener thread --------------------------------------------------------------
    def _start_listener(self) -> None:
        with self._listener_lock:
            if self._listener is None:
                self._listener = threading.Thread(target=self._listen, daemon=True,
                                                  name="stagewidget-redis-listener")
                self._listener.start()

    def _listen(self) -> None:
        """Dispatch published writes and cancel requests; reconnect when Redis returns."""
        failures = 0
        while not self._stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe(f"{self.prefix}:run:*")
                pubsub.subscribe(self._cancel_channel)
                failures = 0
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self._dispatch(message)
            except self._redis_errors:
                failures += 1
                self._stop.wait(_RECONNECT_S[min(failures, len(_RECONNECT_S)) - 1])
            finally:
                try:
                    pubsub.close()
                except Exception:  # closing a broken connection may fail too
                    pass

    def _cancel_requested(self, run_id: str) -> None:
        for callback in tuple(self._cancel_callbacks):
            try:
                callback(run_id)
            except BaseException:  # the listener serves every run: it must go on
                _log.exception("cancel callback %r failed", callback)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("channel") == self._cancel_channel:
            self._cancel_requested(message["data"])
            return
        try:
            record = Record.from_fields(json.loads(message["data"]))
        except Exception:  # a bad message must not end the listener
            _log.exception("could not handle Redis message %r", message)
            return
        self._watchers.notify(record)
