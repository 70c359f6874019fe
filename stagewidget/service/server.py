"""Serve the HTTP API with uvicorn: in the foreground (the CLI) or a background thread.

``sw.serve(pipelines)`` in a notebook starts it in a thread, so an outside front end can
start and watch that kernel's runs; ``python -m stagewidget serve module:pipelines``
runs it in the foreground until Ctrl-C.

Loopback is no boundary on a shared machine (JupyterHub, a lab server): any local user
could reach the port. So a service always requires a bearer token unless told otherwise:
one is generated when none is given (``Service.token``, printed by the CLI's banner).
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import threading
from typing import Any

from ..engine.run import Run, recent_runs
from ..errors import PipelineError, RunNotFound
from .registry import RunRegistry
from .store import MemoryStore, Store

__all__ = ["ACCESS_LOGGER", "Service", "check_bind", "serve"]

ACCESS_LOGGER = "stagewidget.service.access"
MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_S = 10.0


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token (``PipelineError``)."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not token:
        raise PipelineError(
            f"refusing to listen on {host!r} without a token: anyone who reaches it could "
            "start and cancel runs; drop --no-token (or token=''), or bind to 127.0.0.1")


def make_store(redis: str | None, prefix: str = "stagewidget") -> Store:
    """A ``RedisStore`` for a ``redis://`` URL, else a ``MemoryStore``."""
    if redis:
        from .redis_store import RedisStore

        return RedisStore(redis, prefix=prefix)
    return MemoryStore()


class Service:
    """The status service: a registry, its HTTP app and the uvicorn server running it.

    Args:
        pipelines: the pipelines clients may start (a Pipeline, list or dict).
        host, port: where to listen (127.0.0.1 by default; port 0 picks a free one).
        redis: a ``redis://`` URL to share runs between processes (default: in memory).
        token: the bearer token every request but ``GET /api/health`` needs. None (the
            default) generates a random one, read it from ``service.token``; ``""`` turns
            the check off (refused beyond loopback).
        cors_origins: origins allowed by CORS (default none: CORS off).
        max_body_bytes: largest accepted input.
        max_head_bytes: largest request head (request line and headers); a larger one is
            answered 431 before anything else is read.
        head_timeout_s: how long a client may take to send a request head once it
            connected (or began its next request); then 408 and the connection is closed.
        expose_tracebacks: show failed runs' tracebacks to HTTP clients (default: the
            error's type, message and stage only; the traceback stays in this process).
        access_log: log one line per request on the ``stagewidget.service.access`` logger
            (default off, as suits a notebook; the CLI turns it on).
        **registry_options: ``keep_s``, ``max_finished``, ``lost_after_s``, ``sweep_s``,
            ``executor``, ``adopt``: see ``RunRegistry``.
    """

    def __init__(self, pipelines: Any = (), *, host: str = "127.0.0.1", port: int = 8750,
                 redis: str | None = None, token: str | None = None,
                 cors_origins: tuple[str, ...] = (), max_body_bytes: int = 1 << 20,
                 max_head_bytes: int = MAX_HEAD_BYTES, head_timeout_s: float = HEAD_TIMEOUT_S,
                 expose_tracebacks: bool = False, access_log: bool = False,
                 prefix: str = "stagewidget", **registry_options: Any) -> None:
        try:
            import uvicorn
        except ImportError:
            raise ImportError("the status service needs starlette and uvicorn: "
                              "pip install 'stagewidget[service]'") from None
        if token is None:
            token = secrets.token_urlsafe(32)
        check_bind(host, token)
        if not max_head_bytes >= 1024:
            raise PipelineError(f"max_head_bytes must be at least 1024 (got {max_head_bytes!r})")
        if not head_timeout_s > 0:
            raise PipelineError(f"head_timeout_s must be a positive number of seconds "
                                f"(got {head_timeout_s!r})")
        from .http import create_app
        from .protocol import bounded_h11

        self.token: str = token
        """The bearer token clients send (``Authorization: Bearer <token>``); "" for none."""
        self.registry = RunRegistry(pipelines, make_store(redis, prefix), **registry_options)
        self.app = create_app(
            self.registry, token=token, max_body_bytes=max_body_bytes,
            cors_origins=tuple(cors_origins), expose_tracebacks=expose_tracebacks,
            access_log=logging.getLogger(ACCESS_LOGGER) if access_log else None)
        self.host = host
        # h11, always: uvicorn's "auto" would pick httptools when installed, whose heads are
        # unbounded; h11 bounds them (max_head_bytes) and bounded_h11 times them. No
        # WebSocket upgrades: the API has none, and an upgrade would pass the token check.
        self._config = uvicorn.Config(
            self.app, host=host, port=port, log_level="warning", access_log=False,
            lifespan="off", server_header=False, timeout_graceful_shutdown=2,
            http=bounded_h11(head_timeout_s), h11_max_incomplete_event_size=max_head_bytes,
            ws="none")
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self._bound_port: int | None = None

    @property
    def port(self) -> int:
        """The port listened on (the real one when started with port 0)."""
        if self._bound_port is None:
            for server in getattr(self._server, "servers", None) or []:
                for sock in server.sockets:
                    self._bound_port = int(sock.getsockname()[1])
                    break
        return self._bound_port if self._bound_port is not None else int(self._config.port)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8750``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        serving = self._server.started and not self._server.should_exit
        # The token is shown while it is of use, so a notebook user can copy it.
        token = (f" token: {self.token}" if self.token else " no token") if serving else ""
        return (f"<Service {self.url} ({'serving' if serving else 'stopped'}, "
                f"{self.registry.store.name} store, pipelines: "
                f"{', '.join(sorted(self.registry.pipelines)) or 'none'}){token}>")

    def run(self, run_id: str) -> Run:
        """The ``Run`` behind ``run_id`` if this process runs it (to show its widget).

        Raises ``RunNotFound`` for runs of other processes and finished runs let go.
        """
        run = self.registry.local_run(run_id)
        if run is None:
            for recent in recent_runs():
                if recent.run_id == run_id:
                    return recent
            raise RunNotFound(f"run {run_id!r} is not running in this process; read its "
                              "status over HTTP instead")
        return run

    def start(self, timeout: float = 30.0) -> Service:
        """Serve from a background thread; return once it listens. Raises on failure."""
        if self._thread is not None:
            raise RuntimeError("this service was already started")
        self._thread = threading.Thread(target=self._server.run, daemon=True,
                                        name="stagewidget-service")
        self._thread.start()
        while not self._server.started:
            self._thread.join(0.02)
            timeout -= 0.02
            if not self._thread.is_alive() or timeout <= 0:
                self.stop()
                raise RuntimeError(f"the status service did not start on {self.url} "
                                   "(is the port in use?)")
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C, SIGTERM); then clean up."""
        try:
            self._server.run()
        finally:
            self.registry.close()
            self.registry.store.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and release the store (idempotent). Runs already started go on."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.registry.close()
        self.registry.store.close()

    def __enter__(self) -> Service:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(pipelines: Any = (), *, host: str = "127.0.0.1", port: int = 8750,
          adopt: bool = True, **options: Any) -> Service:
    """Serve the status API from a background thread of this process (a notebook kernel).

    Every run this process starts from now on is published too (``adopt=True``), so an
    outside front end can watch the notebook's runs; ``pipelines`` can also be started
    over HTTP. Returns the started ``Service``: clients send its ``token`` (generated
    unless given) as ``Authorization: Bearer <token>``; call ``stop()`` to end it.
    """
    return Service(pipelines, host=host, port=port, adopt=adopt, **options).start()
