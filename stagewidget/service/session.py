"""Browser sessions of the status service: login, logout, the session cookie and CSRF.

A browser cannot send ``Authorization: Bearer``, so ``POST /api/login`` exchanges the
service's token for a session id in a cookie: HttpOnly, SameSite=Strict, Path=/, no
Domain, ``Secure`` over https. It is never the token: cookies ignore ports, so every
server on 127.0.0.1 gets it, and a session id can be ended (logout, 12 h idle) where a
token cannot. Requests authenticated by the cookie that change state also need an
``Origin`` equal to the service's own and the session's CSRF token in ``X-CSRF-Token``
(``TokenGuard`` checks both). Sessions live in the serving process's memory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .wire import json_response

__all__ = ["SAFE_METHODS", "LoginLimiter", "Session", "SessionAuth", "SessionStore",
           "cookie_name", "cookie_values", "header", "normal_origin", "problem",
           "request_origin", "state_change_refusal"]

COOKIE_PREFIX = "stagewidget_session"
CSRF_HEADER = "X-CSRF-Token"
IDLE_S = 12 * 3600.0
MAX_SESSIONS = 1000
MAX_LOGIN_BYTES = 4096
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Session:
    """One browser session: its CSRF token and when it was last used (monotonic s)."""

    csrf_token: str
    last_used: float


class SessionStore:
    """Live sessions by id, at most ``max_sessions`` (the least recently used goes first),
    each ended after ``idle_s`` seconds unused.

    Ids are kept hashed, so a lookup compares no secret byte by byte. Used from the
    server's event loop only (one thread), so it takes no lock.
    """

    def __init__(self, *, idle_s: float = IDLE_S, max_sessions: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not idle_s > 0:
            raise ValueError(f"session_idle_s must be a positive number of seconds "
                             f"(got {idle_s!r})")
        if not (isinstance(max_sessions, int) and max_sessions >= 1):
            raise ValueError(f"max_sessions must be an int of at least 1 "
                             f"(got {max_sessions!r})")
        self.idle_s, self.max_sessions, self._clock = idle_s, max_sessions, clock
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self) -> tuple[str, Session]:
        """Start a session; return its id (for the cookie) and the session."""
        now = self._clock()
        self._expire(now)
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        session_id = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), now)
        self._sessions[_key(session_id)] = session
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        """The live session ``session_id`` names (marked used now), or None."""
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_used > self.idle_s:
            del self._sessions[key]
            return None
        session.last_used = now
        self._sessions.move_to_end(key)
        return session

    def end(self, session_id: str) -> bool:
        """End the session ``session_id``; whether it was live."""
        return self._sessions.pop(_key(session_id), None) is not None

    def _expire(self, now: float) -> None:
        # Oldest use first: stop at the first one still fresh.
        while self._sessions:
            key, session = next(iter(self._sessions.items()))
            if now - session.last_used <= self.idle_s:
                return
            del self._sessions[key]


def _key(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).digest()


class LoginLimiter:
    """Failed logins per client: after ``max_failures`` within ``window_s`` seconds, the
    client waits until the oldest of them is that old (429). Event loop only, no lock."""

    def __init__(self, *, max_failures: int = 5, window_s: float = 60.0,
                 max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window_s, self.max_clients = max_failures, window_s, max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after_s(self, client: str) -> float:
        """Seconds ``client`` must wait before its next login attempt (0: none)."""
        failures = self._failures.get(client)
        if failures is None:
            return 0.0
        now = self._clock()
        while failures and now - failures[0] >= self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return 0.0
        if len(failures) < self.max_failures:
            return 0.0
        return self.window_s - (now - failures[0])

    def failed(self, client: str) -> None:
        """Count a failed login of ``client``."""
        failures = self._failures.setdefault(client, deque(maxlen=self.max_failures))
        failures.append(self._clock())
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s failures."""
        self._failures.pop(client, None)


def cookie_name(scope: dict[str, Any]) -> str:
    """The session cookie's name for the port the request reached: cookies ignore ports,
    so services on two ports of one host would otherwise overwrite each other's."""
    server = scope.get("server")
    return f"{COOKIE_PREFIX}_{server[1]}" if server and server[1] else COOKIE_PREFIX


def cookie_values(headers: Headers, name: str) -> list[str]:
    """Every value of the cookie ``name`` in ``headers`` (a page on another port of the
    same host can add a second one with a longer path; the browser sends both)."""
    wanted, found = name.encode("latin-1"), []
    for header, value in headers:
        if header == b"cookie":
            for pair in value.split(b";"):
                key, sep, given = pair.strip().partition(b"=")
                if sep and key == wanted:
                    found.append(given.strip().strip(b'"').decode("latin-1"))
    return found


def header(headers: Headers, name: bytes) -> str | None:
    """The first value of the (lower-case) header ``name``, or None."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def normal_origin(value: str) -> str | None:
    """``scheme://host:port`` of an origin, lower-case with the port spelled out; None
    if ``value`` is no http(s) origin (``null`` included)."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host or parts.path not in ("", "/"):
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}:{port or (443 if parts.scheme == 'https' else 80)}"


def request_origin(scope: dict[str, Any]) -> str | None:
    """The service's own origin as this request reached it (its scheme and ``Host``)."""
    host = header(scope["headers"], b"host")
    return None if host is None else normal_origin(f"{scope.get('scheme', 'http')}://{host}")


def state_change_refusal(scope: dict[str, Any], session: Session) -> tuple[str, str] | None:
    """Why a state-changing request authenticated by ``session``'s cookie is refused
    (problem slug, detail), or None when its ``Origin`` and CSRF token are right."""
    headers = scope["headers"]
    own = request_origin(scope)
    given = header(headers, b"origin")
    if given is None:
        return ("origin-missing", "a request that changes state with the session cookie "
                f"needs an Origin header (this service's origin is {own!r})")
    if own is None or normal_origin(given) != own:
        return ("origin-mismatch", f"the Origin {_shown(given)} is not this service's "
                f"origin ({own!r}): a page of another origin cannot use the session")
    csrf = header(headers, CSRF_HEADER.lower().encode())
    if csrf is None:
        return ("csrf-token-missing", f"a request that changes state with the session "
                f"cookie needs the {CSRF_HEADER} header (from POST /api/login or "
                "GET /api/session)")
    if not hmac.compare_digest(csrf.encode("latin-1"), session.csrf_token.encode()):
        return ("csrf-token-mismatch", f"the {CSRF_HEADER} header does not match the "
                "session's CSRF token (from POST /api/login or GET /api/session)")
    return None


def _shown(text: str, limit: int = 60) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def problem(status: int, slug: str, title: str, detail: str, instance: str,
            headers: dict[str, str] | None = None) -> Any:
    """An RFC 9457 ``application/problem+json`` response."""
    body = {"type": f"urn:stagewidget:problem:{slug}", "title": title, "status": status,
            "detail": detail, "instance": instance}
    return json_response(body, status_code=status, headers=headers,
                         media_type="application/problem+json")


class SessionAuth:
    """The endpoints ``POST /api/login``, ``POST /api/logout`` and ``GET /api/session``.

    Args:
        token: the service's token ("" or None: the service needs none, nor a login).
        sessions: where sessions live (shared with ``TokenGuard``).
        limiter: counts failed logins per client.
    """

    def __init__(self, *, token: str | None, sessions: SessionStore,
                 limiter: LoginLimiter | None = None) -> None:
        self.token = (token or "").encode()
        self.sessions = sessions
        self.limiter = limiter if limiter is not None else LoginLimiter()

    def session_of(self, scope: dict[str, Any]) -> tuple[str, Session] | None:
        """The live session of the request's cookie (id and session), or None."""
        for session_id in cookie_values(scope["headers"], cookie_name(scope)):
            session = self.sessions.get(session_id)
            if session is not None:
                return session_id, session
        return None

    async def login(self, request: Any) -> Any:
        """Exchange the token (JSON ``{"token": ...}`` or a form field) for a session.

        JSON: 200 and ``{"csrf_token": ..., "idle_timeout_s": ...}``; a form: 303 to
        ``/`` (the page reads the CSRF token from ``GET /api/session``). Both set the
        cookie. A wrong token: 401; too many of them from one client: 429.
        """
        path = request.url.path
        if "token" in parse_qs(request.url.query, keep_blank_values=True):
            return problem(400, "token-in-url", "Token in the URL", "send the token in "
                           "the request body, never in the URL (it would be logged)", path)
        if not self.token:
            return problem(409, "no-token", "No login needed", "this service requires no "
                           "token (it was started with --no-token): nothing to log in to",
                           path)
        own, given = request_origin(request.scope), request.headers.get("origin")
        if given is not None and (own is None or normal_origin(given) != own):
            return problem(403, "origin-mismatch", "Forbidden", f"the Origin "
                           f"{_shown(given)} is not this service's origin ({own!r})", path)
        client = request.client.host if request.client else "-"
        wait_s = self.limiter.retry_after_s(client)
        if wait_s > 0:
            retry = max(1, int(wait_s + 0.999))
            return problem(429, "too-many-logins", "Too many failed logins",
                           f"too many wrong tokens from {client}; try again in {retry} s",
                           path, {"Retry-After": str(retry)})
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BYTES:
                return problem(413, "body-too-large", "Request body too large",
                               f"a login may be at most {MAX_LOGIN_BYTES} bytes", path)
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        given_token, reason = _token_of(kind, body)
        if given_token is None:
            status = 415 if reason.startswith("send") else 400
            return problem(status, "bad-login", "Bad login", reason, path)
        if not hmac.compare_digest(given_token.encode("utf-8", "surrogatepass"), self.token):
            self.limiter.failed(client)
            return problem(401, "wrong-token", "Wrong token",
                           "the token is not this service's token", path)
        self.limiter.succeeded(client)
        name = cookie_name(request.scope)
        for old in cookie_values(request.scope["headers"], name):
            self.sessions.end(old)  # a login always gets a fresh id
        session_id, session = self.sessions.create()
        if kind == "application/x-www-form-urlencoded":
            reply = json_response({"csrf_token": session.csrf_token}, status_code=303,
                                  headers={"Location": "/"})
        else:
            reply = json_response({"csrf_token": session.csrf_token,
                                   "idle_timeout_s": self.sessions.idle_s})
        reply.headers["Cache-Control"] = "no-store"
        reply.headers.append("Set-Cookie", self._cookie(request.scope, name, session_id))
        return reply

    async def logout(self, request: Any) -> Any:
        """End the request's session (``TokenGuard`` has checked it) and clear its cookie."""
        current = self.session_of(request.scope)
        if current is not None:
            self.sessions.end(current[0])
        from starlette.responses import Response

        reply = Response(status_code=204)
        name = cookie_name(request.scope)
        reply.headers.append("Set-Cookie", self._cookie(request.scope, name, "", clear=True))
        return reply

    async def session(self, request: Any) -> Any:
        """Whether the cookie names a live session; its CSRF token if so, and the header
        to send it in; whether there is a token login (``login``: with a token)."""
        current = self.session_of(request.scope)
        body: dict[str, Any] = {"token_required": bool(self.token),
                                "session": current is not None, "login": bool(self.token),
                                "csrf_header": CSRF_HEADER}
        if current is not None:
            body |= {"csrf_token": current[1].csrf_token, "idle_timeout_s":
                     self.sessions.idle_s}
        reply = json_response(body, headers={"Cache-Control": "no-store"})
        name = cookie_name(request.scope)
        if current is None and cookie_values(request.scope["headers"], name):
            reply.headers.append("Set-Cookie", self._cookie(request.scope, name, "",
                                                            clear=True))
        return reply

    @staticmethod
    def _cookie(scope: dict[str, Any], name: str, value: str, *, clear: bool = False
                ) -> str:
        parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
        if clear:
            parts.append("Max-Age=0")
        if scope.get("scheme") == "https":
            parts.append("Secure")
        return "; ".join(parts)


def _token_of(kind: str, body: bytes) -> tuple[str | None, str]:
    """The token a login body carries, or None and what is wrong with the body."""
    if kind == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("ascii"), keep_blank_values=True,
                              max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            return None, "the form body is not valid application/x-www-form-urlencoded"
        values = fields.get("token")
        if not values or len(values) != 1 or not values[0]:
            return None, "the form needs one non-empty 'token' field"
        return values[0], ""
    if kind == "application/json" or kind.endswith("+json"):
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return None, ('the body is not valid JSON: send {"token": "<the service\'s '
                          'token>"}')
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            return None, 'the body must be a JSON object {"token": "<the service\'s token>"}'
        return token, ""
    return None, ("send the token as JSON {\"token\": ...} or a form field 'token' "
                  f"(got content type {kind or 'none'!r})")
