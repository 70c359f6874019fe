"""The HTTP API: an ASGI app (Starlette) over a ``RunRegistry``; speaks only JSON.

Endpoints (all under ``/api``; errors are RFC 9457 ``application/problem+json``):

- ``POST /pipelines/{name}/runs``: start a run with the JSON body as input; 202 and
  ``Location``, or with ``Prefer: wait=N`` (RFC 7240) 200 and the result if it ends
  within N s. ``Idempotency-Key`` makes a retried request return the first run.
- ``GET /runs/{id}``, ``GET /runs`` (``state``, ``pipeline``, ``offset``, ``limit``),
  ``DELETE /runs/{id}`` (cancel), ``GET /runs/{id}/events`` (Server-Sent Events),
  ``POST /runs/{id}/retry`` (``run.retry()`` of a failed or cancelled run, in the
  process that ran it) and ``GET /events`` (``state``, ``pipeline``: one Server-Sent
  Events stream of every change of every matching run).
- ``GET /pipelines``, ``GET /health``, and ``GET /openapi.json`` (the API document).

With a token, every request needs ``Authorization: Bearer <token>`` or a browser session
(``POST /api/login``, ``POST /api/logout``, ``GET /api/session``: see ``session``), checked
before routing (so unknown paths answer 401 too); open to anyone are ``GET /api/health``,
the login and the page (``/``, ``/runs/{id}``, ``/static/...``), which holds no data.
Failed runs show the error's type, message and stage; the traceback only when the
operator opts in (``expose_tracebacks``).
A run's log (what its stages printed, warned and logged) is empty to clients unless the
operator opts in (``expose_logs``): it may hold anything the stage's code wrote.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from ..engine.call import NO_INPUT
from ..errors import InvalidTransition, PipelineError, RunNotFound
from .list_events import MAX_STREAMS, ListStream
from .middleware import AccessLog, LoopbackHostGuard, OriginGuard, TokenGuard
from .openapi import MAX_LIMIT, MAX_OFFSET, SUMMARY_KEYS, openapi_document
from .pages import OPEN_PAGE_PATHS, OPEN_PAGE_PREFIXES, page_routes
from .registry import LOST, STATES, IdempotencyConflict, PipelineNotFound, RunRegistry
from .session import IDLE_S, MAX_SESSIONS, SessionAuth, SessionStore, cookie_name
from .store import TERMINAL, Record, StoreUnavailable
from .wire import ascii_int, encode_json, is_ascii_digits, json_response

__all__ = ["create_app"]

_log = logging.getLogger("stagewidget.service")

# Answered without the token: health, the login and the page (which holds no data).
STREAM_RETRY_S = 5
OPEN_PATHS = frozenset({"/api/health", "/api/login", "/api/session"}) | OPEN_PAGE_PATHS


def _shown(text: str, limit: int = 40) -> str:
    """``repr(text)``, cut to ``limit`` characters, to quote client input in a detail."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


class Problem(Exception):
    """An RFC 9457 problem: becomes the reply's status and ``problem+json`` body."""

    def __init__(self, status: int, slug: str, title: str, detail: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.headers = headers or {}


def _problem_response(problem: Problem, instance: str) -> Any:
    body = {"type": f"urn:stagewidget:problem:{problem.slug}", "title": problem.title,
            "status": problem.status, "detail": problem.detail, "instance": instance}
    return json_response(body, status_code=problem.status, headers=problem.headers,
                         media_type="application/problem+json")


def _unauthorized() -> Problem:
    return Problem(401, "unauthorized", "Unauthorized",
                   "send the service's token as 'Authorization: Bearer <token>'",
                   {"WWW-Authenticate": 'Bearer realm="stagewidget"'})


async def _deny(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI reply to a request without the token: 401 problem+json."""
    await _problem_response(_unauthorized(), scope["path"])(scope, receive, send)


def _as_problem(exc: Exception) -> Problem:
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, PipelineNotFound):
        return Problem(404, "pipeline-not-found", "Pipeline not found", str(exc))
    if isinstance(exc, RunNotFound):
        return Problem(404, "run-not-found", "Run not found", str(exc))
    if isinstance(exc, IdempotencyConflict):
        return Problem(422, "idempotency-key-reused", "Idempotency-Key reused", str(exc))
    if isinstance(exc, PipelineError):
        return Problem(422, "invalid-input", "Input not accepted", str(exc))
    if isinstance(exc, InvalidTransition):
        return Problem(409, "run-ended", "Run already ended", str(exc))
    if isinstance(exc, StoreUnavailable):
        return Problem(503, "store-unavailable", "Status store unavailable", str(exc),
                       {"Retry-After": "1"})
    _log.exception("internal error in the status service")
    return Problem(500, "internal-error", "Internal error",
                   "the service failed to handle this request; see its log")


def parse_prefer_wait(values: list[str], max_wait_s: float) -> float | None:
    """The ``wait`` preference of RFC 7240 ``Prefer`` headers, capped; None if absent.

    Malformed preferences (anything but ASCII digits) are ignored, as the RFC asks.
    """
    for value in values:
        for preference in value.split(","):
            token, _, rest = preference.strip().partition("=")
            if token.strip().lower() != "wait":
                continue
            number = rest.split(";", 1)[0].strip().strip('"')
            if is_ascii_digits(number):
                seconds = ascii_int(number, 12)  # longer: more than any cap
                return max_wait_s if seconds is None else min(float(seconds), max_wait_s)
    return None


class _Api:
    """The endpoints, bound to one registry and the service's settings."""

    def __init__(self, registry: RunRegistry, *, token: str | None, max_body_bytes: int,
                 max_wait_s: float, ping_s: float, expose_tracebacks: bool,
                 expose_logs: bool, max_streams: int = MAX_STREAMS) -> None:
        self.registry = registry
        self.max_streams = max_streams
        self.open_streams = 0  # the event loop's only: no lock
        self.token = token
        self.expose_tracebacks = expose_tracebacks
        self.expose_logs = expose_logs
        self.max_body_bytes = max_body_bytes
        self.max_wait_s = max_wait_s
        self.ping_s = ping_s

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a registry/store function, off the event loop if the store blocks."""
        if self.registry.store.blocking:
            from starlette.concurrency import run_in_threadpool

            return await run_in_threadpool(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    def guard(self, endpoint: Callable[[Any], Awaitable[Any]]
              ) -> Callable[[Any], Awaitable[Any]]:
        """Wrap ``endpoint`` with the problem+json error replies (the token is checked
        before routing, by ``TokenGuard``)."""

        async def guarded(request: Any) -> Any:
            try:
                return await endpoint(request)
            except Exception as exc:
                return _problem_response(_as_problem(exc), request.url.path)

        guarded.__name__ = endpoint.__name__
        return guarded

    def public(self, status: dict[str, Any]) -> dict[str, Any]:
        """``status`` as clients see it: the error's traceback left out (empty) unless the
        operator opted in, as it names the server's files and code; the run's log left
        out (empty) unless the operator opted in, as it holds whatever the stages wrote."""
        if not self.expose_logs and status.get("logs"):
            status = {**status, "logs": []}
        error = status.get("error")
        if self.expose_tracebacks or not error or not error.get("traceback"):
            return status
        return {**status, "error": {**error, "traceback": ""}}

    # -- endpoints --------------------------------------------------------------------
    async def health(self, request: Any) -> Any:
        await self.call(self.registry.store.ping)
        return json_response({"status": "ok", "store": self.registry.store.name,
                             "pipelines": len(self.registry.pipelines)})

    async def openapi(self, request: Any) -> Any:
        return json_response(openapi_document(pipelines=self.registry.input_schemas(),
                                              secured=bool(self.token),
                                              cookie=cookie_name(request.scope)))

    async def pipelines(self, request: Any) -> Any:
        schemas = self.registry.input_schemas()
        return json_response({"pipelines": [
            {"name": name, "stages": [s.name for s in pipe.stages],
             "runs_url": f"/api/pipelines/{name}/runs", "input_schema": schemas[name]}
            for name, pipe in sorted(self.registry.pipelines.items())]})

    async def start_run(self, request: Any) -> Any:
        name = request.path_params["name"]
        body = await self._body(request)
        data = self._input(request, body)
        key = request.headers.get("idempotency-key")
        if key is not None and not (0 < len(key) <= 255 and key.isascii()
                                    and key.isprintable()):
            raise Problem(400, "bad-idempotency-key", "Bad Idempotency-Key",
                          "Idempotency-Key must be 1 to 255 printable characters")
        wait_s = parse_prefer_wait(request.headers.getlist("prefer"), self.max_wait_s)
        fingerprint = hashlib.sha256(body).hexdigest()
        status, created = await self.call(self.registry.start, name, data,
                                          idempotency_key=key, fingerprint=fingerprint)
        headers = {"Location": f"/api/runs/{status['run_id']}"}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        if wait_s is not None:
            headers["Preference-Applied"] = f"wait={wait_s:g}"
            if status["state"] not in TERMINAL:
                await self._wait_recorded(status["run_id"], wait_s)
                status = await self.call(self.registry.get, status["run_id"])
        code = 200 if wait_s is not None and status["state"] in TERMINAL else 202
        return json_response(self.public(status), status_code=code, headers=headers)

    async def run(self, request: Any) -> Any:
        """GET: the run's status; DELETE: cancel it (one route, so 405 lists both)."""
        run_id = request.path_params["run_id"]
        if request.method == "DELETE":
            status = await self.call(self.registry.cancel, run_id)
            return json_response(self.public(status), status_code=202)
        aget = getattr(self.registry.store, "aget", None)
        if aget is None:
            return json_response(self.public(await self.call(self.registry.get, run_id)))
        record = await aget(run_id)  # the hot path: no worker-thread hop
        if record is None:
            raise self.registry.not_found(run_id)
        return json_response(self.public(self.registry.view(record)))

    async def list_runs(self, request: Any) -> Any:
        query = request.query_params
        state = _state_param(query)
        offset = _int_param(query, "offset", 0, 0, MAX_OFFSET)
        limit = _int_param(query, "limit", 50, 1, MAX_LIMIT)
        pipeline = query.get("pipeline")
        key = query.get("idempotency_key")
        if key is not None and not (0 < len(key) <= 255 and key.isascii()
                                    and key.isprintable()):
            raise Problem(400, "bad-query", "Bad query",
                          "idempotency_key must be 1 to 255 printable ASCII characters")
        page = await self.call(self.registry.list, state=state, pipeline=pipeline,
                               idempotency_key=key, offset=offset, limit=limit)
        next_url = None
        if offset + limit < page.total:
            params = {k: v for k, v in (("state", state), ("pipeline", pipeline),
                                        ("idempotency_key", key)) if v}
            next_url = "/api/runs?" + urlencode({**params, "offset": offset + limit,
                                                 "limit": limit})
        runs = [{k: run.get(k) for k in SUMMARY_KEYS} | {"url": f"/api/runs/{run['run_id']}"}
                for run in map(self.public, page.runs)]
        return json_response({"runs": runs, "total": page.total, "offset": offset,
                             "limit": limit, "next": next_url})

    async def events(self, request: Any) -> Any:
        """GET: the run's Server-Sent Events; HEAD: their headers only, at once."""
        from starlette.responses import Response, StreamingResponse

        run_id = request.path_params["run_id"]
        first = await self.call(self.registry.record, run_id)  # 404 before streaming
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        if request.method == "HEAD":
            # Starlette answers HEAD through the GET endpoint and a StreamingResponse would
            # run the stream to its end (until the run ends) just to throw the body away.
            head = Response(None, headers=headers, media_type="text/event-stream")
            del head.headers["content-length"]  # the GET streams, chunked
            return head
        self._take_stream()
        return _Counted(StreamingResponse(self._stream(run_id, first),
                                          media_type="text/event-stream", headers=headers),
                        self._give_back_stream)

    async def retry(self, request: Any) -> Any:
        """POST: start ``run.retry()`` of a failed or cancelled run this process owns."""
        run_id = request.path_params["run_id"]
        try:
            status = await self.call(self.registry.retry, run_id)
        except InvalidTransition as exc:
            raise Problem(409, "not-retryable", "Run cannot be retried here",
                          str(exc)) from None
        return json_response(self.public(status), status_code=202,
                             headers={"Location": f"/api/runs/{status['run_id']}"})

    async def list_events(self, request: Any) -> Any:
        """GET: Server-Sent Events of every matching run; HEAD: their headers only."""
        from starlette.responses import Response, StreamingResponse

        state = _state_param(request.query_params)
        pipeline = request.query_params.get("pipeline")
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        if request.method == "HEAD":  # the GET never ends: see events()
            head = Response(None, headers=headers, media_type="text/event-stream")
            del head.headers["content-length"]
            return head
        self._take_stream()
        try:
            stream = ListStream(self, state, pipeline)
            await stream.open()  # a store error answers 503 before streaming
        except BaseException:
            self._give_back_stream()
            raise
        return _Counted(StreamingResponse(stream.events(), media_type="text/event-stream",
                                          headers=headers), self._give_back_stream)

    # -- helpers ----------------------------------------------------------------------
    def _take_stream(self) -> None:
        """Count one more open event stream, or refuse it (429) at ``max_streams``: each
        holds a connection and a store watch, so their number is bounded."""
        if self.open_streams >= self.max_streams:
            raise Problem(429, "too-many-streams", "Too many event streams",
                          f"this service already serves {self.max_streams} event streams, "
                          "its limit (max_streams); close one or try again later",
                          {"Retry-After": str(STREAM_RETRY_S)})
        self.open_streams += 1

    def _give_back_stream(self) -> None:
        self.open_streams -= 1

    async def _body(self, request: Any) -> bytes:
        # The HTTP parser has checked the framing; this only refuses early what is too big.
        declared = request.headers.get("content-length", "")
        if is_ascii_digits(declared) and (
                len(declared) > 18 or int(declared) > self.max_body_bytes):
            raise self._too_large()
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> Problem:
        return Problem(413, "body-too-large", "Request body too large",
                       f"the input may be at most {self.max_body_bytes} bytes")

    @staticmethod
    def _input(request: Any, body: bytes) -> Any:
        if not body.strip():
            return NO_INPUT
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/json" and not kind.endswith("+json"):
            raise Problem(415, "unsupported-media-type", "Unsupported media type",
                          f"send the input as application/json (got {kind or 'no type'!r})")
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise Problem(400, "invalid-json", "Invalid JSON",
                          f"the body is not valid JSON: {exc}") from None

    async def _wait_recorded(self, run_id: str, wait_s: float) -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(done.set)
            except RuntimeError:  # the server stopped meanwhile
                pass

        self.registry.when_recorded_done(run_id, wake)
        try:
            await asyncio.wait_for(done.wait(), wait_s)
        except TimeoutError:
            pass

    async def _stream(self, run_id: str, first: Record) -> AsyncIterator[str]:
        """Server-Sent Events: the status now, then each change, until the run ends."""
        loop = asyncio.get_running_loop()
        latest: list[Record] = []
        changed = asyncio.Event()

        def on_record(record: Record) -> None:  # a store thread: hand over to the loop
            def deliver() -> None:
                latest[:] = [record]
                changed.set()
            try:
                loop.call_soon_threadsafe(deliver)
            except RuntimeError:  # the loop closed: the stream is over
                pass

        unwatch = await self.call(self.registry.store.watch, run_id, on_record)
        try:
            # What happened between the first read and the watch is read again.
            record: Record | None = await self.call(self.registry.store.get, run_id) or first
            sent_at, number = -1.0, 0
            while True:
                if record is not None and record.heartbeat_at >= sent_at:
                    sent_at, number = record.heartbeat_at, number + 1
                    status = self.public(self.registry.view(record))
                    data = encode_json(status).decode("ascii")
                    yield f"id: {number}\nevent: status\ndata: {data}\n\n"
                    if status["state"] in TERMINAL or status["state"] == LOST:
                        end = encode_json({"state": status["state"]}).decode("ascii")
                        yield f"event: end\ndata: {end}\n\n"
                        return
                record = None
                try:
                    await asyncio.wait_for(changed.wait(), self.ping_s)
                except TimeoutError:
                    try:  # nothing published: look, so a silent owner turns lost
                        record = await self.call(self.registry.store.get, run_id)
                    except StoreUnavailable:
                        pass
                    stale = record is None or record.heartbeat_at <= sent_at
                    if stale and (record is None or self.registry.view(record)["state"] != LOST):
                        record = None
                        yield ": ping\n\n"
                    continue
                changed.clear()
                record = latest[0]
        finally:
            unwatch()


class _Counted:
    """An ASGI response that calls ``release`` once it has been served, whichever way it
    ended (the stream ran out, the client went away, the server stopped)."""

    def __init__(self, response: Any, release: Callable[[], None]) -> None:
        self.response, self.release = response, release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.response(scope, receive, send)
        finally:
            self.release()


def _state_param(query: Any) -> str | None:
    state: str | None = query.get("state")
    if state is not None and state not in STATES:
        raise Problem(400, "bad-query", "Bad query",
                      f"state must be one of {', '.join(STATES)} (got {_shown(state)})")
    return state


def _int_param(query: Any, name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    value = ascii_int(raw, len(str(high)))
    if value is None or not low <= value <= high:
        raise Problem(400, "bad-query", "Bad query", f"{name} must be an integer between "
                      f"{low} and {high}, in ASCII digits (got {_shown(raw)})")
    return value


def create_app(registry: RunRegistry, *, token: str | None = None,
               max_body_bytes: int = 1 << 20, max_wait_s: float = 300.0, ping_s: float = 5.0,
               cors_origins: tuple[str, ...] = (), expose_tracebacks: bool = False,
               expose_logs: bool = False, access_log: logging.Logger | None = None,
               session_idle_s: float = IDLE_S, max_sessions: int = MAX_SESSIONS,
               loopback_only: bool = False, allowed_hosts: tuple[str, ...] = (),
               max_streams: int = MAX_STREAMS) -> Any:
    """Build the Starlette app serving ``registry``.

    Args:
        token: if set (non-empty), every request but ``GET /api/health`` needs
            ``Authorization: Bearer <token>``, the API document and unknown paths included.
        max_body_bytes: largest accepted input.
        max_wait_s: the cap on ``Prefer: wait``.
        ping_s: how often an idle event stream sends a comment (and re-reads the run).
        cors_origins: origins allowed by CORS (none by default: CORS off).
        expose_tracebacks: show failed runs' tracebacks to clients (default: type, message
            and stage only).
        expose_logs: show runs' logs (their stages' prints, warnings, logging records) to
            clients (default: ``logs`` is empty).
        access_log: log one line per request on this logger (default: none).
        session_idle_s: a browser session (``POST /api/login``) ends after this long
            unused.
        max_sessions: at most this many live sessions (the least recently used ends).
        loopback_only: answer 400 to a request whose ``Host`` is no loopback name (the
            service listens on loopback: another name is DNS rebinding).
        allowed_hosts: host names served besides the loopback ones (with
            ``loopback_only``).
        max_streams: at most this many event streams open at once (``/api/events`` and
            each run's ``events``); one more is answered 429.
    """
    try:
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.middleware import Middleware
        from starlette.middleware.cors import CORSMiddleware
        from starlette.routing import Route
    except ImportError:
        raise ImportError("the status service needs starlette and uvicorn: "
                          "pip install 'stagewidget[service]'") from None
    api = _Api(registry, token=token or None, max_body_bytes=max_body_bytes,
               max_wait_s=max_wait_s, ping_s=ping_s, expose_tracebacks=expose_tracebacks,
               expose_logs=expose_logs, max_streams=max_streams)
    g = api.guard
    auth = SessionAuth(token=token, sessions=SessionStore(idle_s=session_idle_s,
                                                          max_sessions=max_sessions))
    routes = [
        Route("/api/login", g(auth.login), methods=["POST"]),
        Route("/api/logout", g(auth.logout), methods=["POST"]),
        Route("/api/session", g(auth.session), methods=["GET"]),
        Route("/api/health", g(api.health), methods=["GET"]),
        Route("/openapi.json", g(api.openapi), methods=["GET"]),
        Route("/api/openapi.json", g(api.openapi), methods=["GET"]),
        Route("/api/pipelines", g(api.pipelines), methods=["GET"]),
        Route("/api/pipelines/{name}/runs", g(api.start_run), methods=["POST"]),
        Route("/api/runs", g(api.list_runs), methods=["GET"]),
        Route("/api/runs/{run_id}", g(api.run), methods=["GET", "DELETE"]),
        Route("/api/runs/{run_id}/events", g(api.events), methods=["GET"]),
        Route("/api/runs/{run_id}/retry", g(api.retry), methods=["POST"]),
        Route("/api/events", g(api.list_events), methods=["GET"]),
        *page_routes(),
    ]
    # Outermost first: every request is logged; CORS answers preflights (which carry no
    # token) and adds its headers to 401s too; the token is checked before routing.
    middleware = []
    if access_log is not None:
        middleware.append(Middleware(AccessLog, logger=access_log))
    if loopback_only:
        middleware.append(Middleware(LoopbackHostGuard, also=allowed_hosts))
    if cors_origins:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Prefer", "Idempotency-Key",
                           "X-CSRF-Token"],
            expose_headers=["Location", "Preference-Applied", "Idempotent-Replayed"]))
    if token:
        middleware.append(Middleware(TokenGuard, token=token, open_paths=OPEN_PATHS,
                                     open_prefixes=OPEN_PAGE_PREFIXES, auth=auth,
                                     deny=_deny))
    else:  # no session to carry a CSRF token: the Origin alone tells other pages apart
        middleware.append(Middleware(OriginGuard, allowed=cors_origins))

    async def http_error(request: Any, exc: Exception) -> Any:
        assert isinstance(exc, HTTPException)
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        problem = Problem(exc.status_code, slug, str(exc.detail),
                          f"{request.method} {request.url.path}: {exc.detail}",
                          dict(exc.headers or {}))
        return _problem_response(problem, request.url.path)

    return Starlette(debug=False, routes=routes, middleware=middleware,
                     exception_handlers={HTTPException: http_error})

