"""Serve the HTTP API with uvicorn: in the foreground (the CLI) or a background thread.

``sw.serve(pipelines)`` in a notebook starts it in a thread, so an outside front end can
start and watch that kernel's runs; ``python -m stagewidget serve module:pipelines``
runs it in the foreground until Ctrl-C.
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Any

from ..engine.run import Run, recent_runs
from ..errors import PipelineError, RunNotFound
from .registry import RunRegistry
from .store import MemoryStore, Store

__all__ = ["Service", "check_bind", "serve"]


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
            "start and cancel runs; pass --token (or token=...), or bind to 127.0.0.1")


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
        token: bearer token required by every endpoint but health (required off-host).
        cors_origins: origins allowed by CORS (default none: CORS off).
        max_body_bytes: largest accepted input.
        **registry_options: ``keep_s``, ``max_finished``, ``lost_after_s``, ``sweep_s``,
            ``max_running``, ``executor``, ``adopt``: see ``RunRegistry``.
    """

    def __init__(self, pipelines: Any = (), *, host: str = "127.0.0.1", port: int = 8750,
                 redis: str | None = None, token: str | None = None,
                 cors_origins: tuple[str, ...] = (), max_body_bytes: int = 1 << 20,
                 prefix: str = "stagewidget", **registry_options: Any) -> None:
        try:
            import uvicorn
        except ImportError:
            raise ImportError("the status service needs starlette and uvicorn: "
                              "pip install 'stagewidget[service]'") from None
        check_bind(host, token)
        from .http import create_app

        self.registry = RunRegistry(pipelines, make_store(redis, prefix), **registry_options)
        self.app = create_app(self.registry, token=token, max_body_bytes=max_body_bytes,
                              cors_origins=tuple(cors_origins))
        self.host = host
        self._config = uvicorn.Config(
            self.app, host=host, port=port, log_level="warning", access_log=False,
            lifespan="off", server_header=False, timeout_graceful_shutdown=2)
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
        state = "serving" if self._server.started and not self._server.should_exit else "stopped"
        return (f"<Service {self.url} ({state}, {self.registry.store.name} store, "
                f"pipelines: {', '.join(sorted(self.registry.pipelines)) or 'none'})>")

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
    over HTTP. Returns the started ``Service``; call ``stop()`` to end it.
    """
    return Service(pipelines, host=host, port=port, adopt=adopt, **options).start()
