"""ASGI middleware of the status service: the Host and Origin checks, the token check and
the access log.

They wrap the whole app, so they see every request, routed or not: an unknown path or
method gets 401 before 404/405 when a token is set, and every request gets a log line.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Collection
from functools import lru_cache
from typing import Any

from .session import (
    SAFE_METHODS,
    SessionAuth,
    header,
    normal_origin,
    problem,
    request_origin,
    state_change_refusal,
)

__all__ = ["AccessLog", "LoopbackHostGuard", "OriginGuard", "TokenGuard", "is_loopback_host",
           "token_matches"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def token_matches(headers: list[tuple[bytes, bytes]], token: bytes) -> bool:
    """Whether the raw ASGI ``headers`` carry ``Authorization: Bearer <token>``."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, given = value.partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token)
    return False


def _host_name(host: str) -> str:
    """The name of a ``Host`` header value, without its port, lower-case."""
    name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not name or (port and not port.isdigit()):
        name = host
    return name.lower().rstrip(".")


@lru_cache(maxsize=256)  # every request asks, nearly always for the same one or two
def is_loopback_host(host: str) -> bool:
    """Whether the ``Host`` header value ``host`` names this machine's loopback:
    ``localhost`` (and ``*.localhost``, which browsers resolve themselves), 127.0.0.0/8
    or ``[::1]``, with any port."""
    name = _host_name(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class LoopbackHostGuard:
    """Answer 400 to a request whose ``Host`` names no loopback address (DNS rebinding).

    A service bound to loopback is reached as 127.0.0.1 or localhost. A page of
    ``evil.example`` whose name the attacker re-points at 127.0.0.1 reaches it too, as
    its own origin (so the browser lets it read the replies), but its requests say
    ``Host: evil.example``: refused here, the page and the API alike. A request with
    no ``Host`` (HTTP/1.0, never a browser) passes.

    Args:
        app: the ASGI app behind the guard.
        also: more host names to serve (a reverse proxy on this machine that passes
            its own public name on), compared without the port and case.
    """

    def __init__(self, app: App, *, also: Collection[str] = ()) -> None:
        self.app = app
        self.also = frozenset(name.lower().rstrip(".") for name in also)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = header(scope["headers"], b"host")
            if (host is not None and not is_loopback_host(host)
                    and _host_name(host) not in self.also):
                shown = repr(host) if len(host) <= 60 else repr(host[:60]) + "..."
                await problem(400, "host-not-allowed", "Host not allowed",
                              f"the Host {shown} is not a loopback name: this service "
                              "listens on loopback only, so reach it as 127.0.0.1, "
                              "localhost or [::1] (another name pointing here is how DNS "
                              "rebinding attacks look; a proxy's name goes in "
                              "allowed_hosts)", scope["path"])(scope, receive, send)
                return
        await self.app(scope, receive, send)


class OriginGuard:
    """Answer 403 to a request that changes state sent by a page of another origin.

    For a service without a token (no ``TokenGuard``, no session): a page anywhere
    could otherwise start or retry runs with a plain form post, which needs no CORS
    preflight. A request with an ``Origin`` (browsers send one on every POST and DELETE)
    that is neither the service's own nor one of ``allowed`` (the CORS origins) is
    refused, ``Origin: null`` too; one without it (curl, scripts) passes.
    """

    def __init__(self, app: App, *, allowed: Collection[str] = ()) -> None:
        self.app = app
        self.allowed = {o for o in map(normal_origin, allowed) if o is not None}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            given = header(scope["headers"], b"origin")
            if given is not None:
                origin = normal_origin(given)
                own = request_origin(scope)
                if origin is None or (origin != own and origin not in self.allowed):
                    shown = repr(given) if len(given) <= 60 else repr(given[:60]) + "..."
                    await problem(403, "origin-mismatch", "Forbidden",
                                  f"the Origin {shown} is not this service's origin "
                                  f"({own!r}): a page of another origin cannot change "
                                  "runs here", scope["path"])(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class TokenGuard:
    """Answer 401 to any HTTP request without the token, except on open paths.

    A live session cookie (``auth``) stands for the token, but a request it authenticates
    that changes state (any method but GET, HEAD, OPTIONS) also needs the service's own
    ``Origin`` and the session's ``X-CSRF-Token``, else 403 saying which check failed.
    The bearer token alone needs neither: a browser never sends it by itself.

    Args:
        app: the ASGI app behind the guard.
        token: the bearer token (non-empty).
        open_paths: exact paths served without it (health, login, the page).
        deny: an ASGI app answering the 401 (a problem+json response).
        open_prefixes: path prefixes served without it (the page's routes and files
            only: whatever routes under them answers anyone).
        auth: the browser sessions (None: the bearer token only).
    """

    def __init__(self, app: App, *, token: str, open_paths: Collection[str], deny: App,
                 open_prefixes: tuple[str, ...] = (), auth: SessionAuth | None = None
                 ) -> None:
        self.app, self.token, self.open_paths, self.deny = app, token.encode(), open_paths, deny
        self.open_prefixes, self.auth = open_prefixes, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["path"] in self.open_paths
                or token_matches(scope["headers"], self.token)
                or scope["path"].startswith(self.open_prefixes)):
            await self.app(scope, receive, send)
            return
        current = self.auth.session_of(scope) if self.auth is not None else None
        if current is None:
            await self.deny(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS:
            refusal = state_change_refusal(scope, current[1])
            if refusal is not None:
                await problem(403, refusal[0], "Forbidden", refusal[1], scope["path"]
                              )(scope, receive, send)
                return
        await self.app(scope, receive, send)


class AccessLog:
    """Log one line per request on ``logger`` once its response has ended.

    ``client "METHOD /path?query HTTP/1.1" status duration``, at INFO, in the style of
    uvicorn's access log. No header is logged, so neither is the token nor the session
    cookie; the value of a query parameter named like a token is replaced. A request that ends
    without a response (the client went away first) is logged with status ``-``.

    It runs for every request, so it is kept cheap: the status is noted by a small object
    passing ``send`` straight through (no closure, no extra coroutine per message), and the
    record is made directly with this call site as its origin, which is what the logging
    module would find by walking the stack; the message is formatted only when handled.
    """

    def __init__(self, app: App, *, logger: logging.Logger) -> None:
        self.app, self.logger = app, logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        logger = self.logger
        if scope["type"] != "http" or not logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        noted = _StatusNote(send)
        try:
            await self.app(scope, receive, noted)
        finally:
            took_ms = (time.perf_counter() - started) * 1e3
            client = scope.get("client")
            # The path as sent (percent-encoded: the parser let only visible ASCII through),
            # so no decoded control character can forge a log line.
            path = (scope.get("raw_path") or scope["path"].encode("utf-8", "backslashreplace")
                    ).decode("latin-1")
            query = scope.get("query_string", b"").decode("latin-1")
            if "token" in query.lower():  # a token sent in the URL by mistake stays out
                query = _redacted(query)
            logger.handle(logger.makeRecord(
                logger.name, logging.INFO, _CODE.co_filename, sys._getframe().f_lineno,
                '%s "%s %s%s%s HTTP/%s" %s %.1f ms',
                (f"{client[0]}:{client[1]}" if client else "-", scope["method"], path,
                 "?" if query else "", query, scope.get("http_version", "1.1"), noted.status,
                 took_ms),
                None, _CODE.co_name))


def _redacted(query: str) -> str:
    """``query`` with the value of every parameter whose name holds "token" replaced."""
    return "&".join(
        f"{name}=[redacted]" if "token" in name.lower() else f"{name}{sep}{value}"
        for name, sep, value in (pair.partition("=") for pair in query.split("&")))


_CODE = AccessLog.__call__.__code__  # the origin of its records (a frame would be a cycle)


class _StatusNote:
    """``send`` for the app behind ``AccessLog``: notes the response status on the way."""

    __slots__ = ("send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status: int | str = "-"

    def __call__(self, message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        return self.send(message)
