"""Serve the HTTP API with uvicorn: in the foreground (the CLI) or a background thread.

``sw.serve(pipelines)`` in a notebook starts it in a thread, so an outside front end can
start and watch that kernel's runs; ``python -m stagewidget serve module:pipelines``
runs it in the foreground until SIGTERM or Ctrl-C, then shuts down in order: it stops
accepting requests, lets runs go on for a drain period, cancels those still going,
writes every run's final status to the store and exits 0.

Loopback is no boundary on a shared machine (JupyterHub, a lab server): any local user
could reach the port. So a service always requires a bearer token unless told otherwise:
one is generated when none is given (``Service.token``, printed by the CLI's banner).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from ..engine.run import Run, recent_runs
from ..errors import AlreadyStarted, ConfigError, RunNotFound
from ..status import RunState, RunStatus, StageState
from .list_events import MAX_STREAMS
from .registry import RunRegistry
from .session import IDLE_S, MAX_SESSIONS
from .store import MemoryStore, Store
from .stores import STORE_FORMS, make_store

__all__ = ["ACCESS_LOGGER", "STORE_FORMS", "Service", "check_bind", "make_store", "serve"]

ACCESS_LOGGER = "stagewidget.service.access"
MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_S = 10.0

_log = logging.getLogger("stagewidget.service")

DRAIN_S = 5.0  # see Service.shutdown for why
CANCEL_WAIT_S = 3.0


def is_loopback_bind(host: str) -> bool:
    """Whether listening on ``host`` reaches this machine's loopback only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token (``ConfigError``)."""
    if not is_loopback_bind(host) and not token:
        raise ConfigError(
            f"refusing to listen on {host!r} without a token: anyone who reaches it could "
            "start and cancel runs; drop --no-token (or token=''), or bind to 127.0.0.1")


class Service:
    """The status service: a registry, its HTTP app and the uvicorn server running it.

    Args:
        pipelines: the pipelines clients may start (a Pipeline, list or dict).
        host, port: where to listen (127.0.0.1 by default; port 0 picks a free one).
        store: where runs are recorded: ``"memory"`` (the default: this process only),
            ``"redis://host:port/db"`` (shared by processes on any host) or
            ``"sqlite:///path.db"`` (a file shared by the processes of this host; runs
            survive a restart), or a store object.
        redis: a ``redis://`` URL, the same as ``store=`` with it (kept as an alias).
        prefix: the Redis key prefix.
        token: the bearer token every request but ``GET /api/health``, the login and the
            page need (a browser logs in with it for a session cookie). None (the
            default) generates a random one, read it from ``service.token``; ``""`` turns
            the check off (refused beyond loopback).
        cors_origins: origins allowed by CORS (default none: CORS off).
        max_body_bytes: largest accepted input.
        max_head_bytes: largest request head (request line and headers); a larger one is
            answered 431 before anything else is read.
        head_timeout_s: how long a client may take to send a request head once it
            connected (or began its next request); then 408 and the connection is closed.
        http: the HTTP parser: ``"auto"`` (httptools when installed, as it is faster;
            else h11), ``"h11"`` or ``"httptools"``. Both keep the head limits above;
            ``service.http`` says which one serves.
        expose_tracebacks: show failed runs' tracebacks to HTTP clients (default: the
            error's type, message and stage only; the traceback stays in this process).
        expose_logs: show runs' logs (what their stages printed, warned and logged) to
            HTTP clients (default: an empty ``logs``; the log stays in this process).
        access_log: log one line per request on the ``stagewidget.service.access`` logger
            (default off, as suits a notebook; the CLI turns it on).
        session_idle_s: a browser session (the page's login, which exchanges the token
            for a session cookie) ends after this many seconds unused (12 h).
        max_sessions: at most this many live browser sessions (the least recently used
            ends first).
        allowed_hosts: host names a service bound to loopback serves besides
            ``127.0.0.1``, ``localhost`` and ``[::1]``: the public name a reverse proxy
            on this machine passes on in ``Host``. Any other ``Host`` is answered 400,
            as a page of another name pointing at 127.0.0.1 (DNS rebinding) would be
            one.
        max_streams: at most this many event streams open at once (``/api/events`` and
            runs' ``events``; a browser tab holds one or two); one more is answered 429.
        **registry_options: ``keep_s``, ``max_finished``, ``lost_after_s``, ``sweep_s``,
            ``max_running``, ``executor``, ``adopt``: see ``RunRegistry``.
    """

    def __init__(self, pipelines: Any = (), *, host: str = "127.0.0.1", port: int = 8750,
                 store: str | Store | None = None, redis: str | None = None,
                 token: str | None = None,
                 cors_origins: tuple[str, ...] = (), max_body_bytes: int = 1 << 20,
                 max_head_bytes: int = MAX_HEAD_BYTES, head_timeout_s: float = HEAD_TIMEOUT_S,
                 http: str = "auto", expose_tracebacks: bool = False,
                 expose_logs: bool = False, access_log: bool = False,
                 prefix: str = "stagewidget", session_idle_s: float = IDLE_S,
                 max_sessions: int = MAX_SESSIONS, max_streams: int = MAX_STREAMS,
                 allowed_hosts: tuple[str, ...] = (), **registry_options: Any) -> None:
        try:
            import uvicorn
        except ImportError:
            raise ImportError("the status service needs starlette and uvicorn: "
                              "pip install 'stagewidget[service]'") from None
        if token is None:
            token = secrets.token_urlsafe(32)
        check_bind(host, token)
        if not max_head_bytes >= 1024:
            raise ConfigError(f"max_head_bytes must be at least 1024 (got {max_head_bytes!r})")
        if isinstance(allowed_hosts, str) or not all(
                isinstance(name, str) and name and ":" not in name for name in allowed_hosts):
            raise ConfigError(f"allowed_hosts must be a list of host names without a port "
                              f"(got {allowed_hosts!r})")
        if not (isinstance(max_streams, int) and max_streams >= 1):
            raise ConfigError(f"max_streams must be an int of at least 1 (got {max_streams!r})")
        if not head_timeout_s > 0:
            raise ConfigError(f"head_timeout_s must be a positive number of seconds "
                              f"(got {head_timeout_s!r})")
        from .http import create_app
        from .protocol import bounded_protocol, pick_parser

        self.http: str = pick_parser(http)
        """The HTTP parser serving: ``"httptools"`` or ``"h11"``."""

        self.token: str = token
        """The bearer token clients send (``Authorization: Bearer <token>``); "" for none."""
        self.registry = RunRegistry(pipelines, make_store(store, redis=redis, prefix=prefix),
                                    **registry_options)
        self.app = create_app(
            self.registry, token=token, max_body_bytes=max_body_bytes,
            cors_origins=tuple(cors_origins), expose_tracebacks=expose_tracebacks,
            expose_logs=expose_logs,
            access_log=logging.getLogger(ACCESS_LOGGER) if access_log else None,
            session_idle_s=session_idle_s, max_sessions=max_sessions,
            loopback_only=is_loopback_bind(host), allowed_hosts=tuple(allowed_hosts),
            max_streams=max_streams)
        self.host = host
        # The parser picked above, never uvicorn's own choice: bounded_protocol bounds and
        # times request heads with either. No WebSocket upgrades: the API has none, and an
        # upgrade would pass the token check.
        self._config = uvicorn.Config(
            self.app, host=host, port=port, log_level="warning", access_log=False,
            lifespan="off", server_header=False, timeout_graceful_shutdown=2,
            http=bounded_protocol(self.http, max_head_bytes=max_head_bytes,
                                  head_timeout_s=head_timeout_s),
            h11_max_incomplete_event_size=max_head_bytes, ws="none")
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self._handover: threading.Thread | None = None
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
                f"{self.registry.store.name} store, {self.http} parser, pipelines: "
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
        """Serve from a background thread; return once it listens.

        Raises:
            AlreadyStarted: this service was started before (start it once; ``stop()``
                may be called any number of times).
            RuntimeError: it could not listen (the port is in use).
        """
        if self._thread is not None:
            raise AlreadyStarted(f"this service was already started (on {self.url})")
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

    def serve_forever(self, *, drain_s: float = DRAIN_S) -> None:
        """Serve until SIGTERM or SIGINT (Ctrl-C), then ``shutdown(drain_s=drain_s)``.

        Blocks. A second SIGTERM or SIGINT during the drain cancels the runs at once.
        Called from a thread other than the main one, only the server ending stops it.
        """
        signals = _Signals()
        with signals.caught():
            self.start()
            serving = self._thread
            while serving is not None and serving.is_alive() and not signals.first.wait(0.2):
                pass
            self.shutdown(drain_s=drain_s, cancel_now=signals.second)

    def shutdown(self, *, drain_s: float = 0.0, cancel_wait_s: float = CANCEL_WAIT_S,
                 cancel_now: threading.Event | None = None) -> None:
        """Stop serving, end this process's runs and record how each ended (blocks).

        1. Stop accepting requests (those in flight get uvicorn's graceful timeout).
        2. Let runs go on for up to ``drain_s`` seconds; cancel those still going then,
           or as soon as ``cancel_now`` is set (the CLI sets it on a second signal).
        3. Wait up to ``cancel_wait_s`` for them to stop. A run whose stage ignores
           cancel is recorded as cancelled anyway: this process is about to exit, and
           process-executor workers end with it.
        4. Write every pending status to the store, then release it.

        The default drain of the CLI (5 s) lets short runs and waiting requests finish
        while the whole shutdown fits in the 10 s that ``docker stop`` allows (30 s in
        Kubernetes) before SIGKILL; a run needing hours cannot be saved by any drain an
        orchestrator allows, so it is cancelled with its state recorded instead. Raise
        ``--drain-s`` together with the orchestrator's grace period.
        """
        self._stop_serving()
        self.registry.stop_adopting()
        runs = self.registry.local_runs()
        if runs:
            _log.info("shutting down: waiting up to %g s for %d run(s) to finish; send "
                      "SIGTERM or Ctrl-C again to cancel them now", drain_s, len(runs))
        stop_now = cancel_now if cancel_now is not None else threading.Event()
        going = _wait_runs(runs, drain_s, stop_now)
        for run in going:  # queued runs leave the queue and end without starting
            self.registry.cancel_local(run.run_id)
        if going:
            _log.info("shutting down: cancelled %d run(s) still going", len(going))
        stuck = _wait_runs(going, cancel_wait_s, threading.Event())
        self.registry.close()
        for run in stuck:
            _log.warning("run %s did not stop within %g s of cancel; recording it as "
                         "cancelled as this process exits", run.run_id, cancel_wait_s)
            try:
                self.registry.write_now(_abandoned(run.status(), cancel_wait_s))
            except Exception:
                _log.exception("could not record run %s as cancelled", run.run_id)
        self.registry.store.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (idempotent). Runs already started go on (does not block on them).

        They belong to whoever started them (a notebook's runs show in its widgets), so
        stopping the window onto them does not end them. Their records keep being
        written until they end, so other processes sharing the store see them finish
        rather than report them lost; the store is released after the last one. To
        cancel them instead, use ``shutdown()``.
        """
        self._stop_serving(timeout)
        self.registry.stop_adopting()
        if self._handover is not None:
            return
        runs = self.registry.local_runs()
        if not runs or isinstance(self.registry.store, MemoryStore):
            self._release()  # nobody else reads a memory store once HTTP is gone
            return
        self._handover = threading.Thread(target=self._release, args=(runs,), daemon=True,
                                          name="stagewidget-service-handover")
        self._handover.start()

    def _stop_serving(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def _release(self, runs: tuple[Run, ...] | list[Run] = ()) -> None:
        for run in runs:
            run.wait()
        self.registry.close()
        self.registry.store.close()

    def __enter__(self) -> Service:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Signals:
    """SIGTERM and SIGINT, counted: the first asks to shut down, the second to hurry."""

    def __init__(self) -> None:
        self.first = threading.Event()
        self.second = threading.Event()

    def _handle(self, signum: int, frame: object) -> None:
        (self.second if self.first.is_set() else self.first).set()

    @contextlib.contextmanager
    def caught(self) -> Iterator[None]:
        """Handle both signals here (main thread only), then restore the old handlers.

        uvicorn serves from another thread, so it never installs its own handlers,
        which re-raise the signal once the server stops and so end the process before
        the runs' final statuses are written.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._handle)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _wait_runs(runs: list[Run], timeout_s: float, stop: threading.Event) -> list[Run]:
    """Wait until ``runs`` end, ``timeout_s`` passes or ``stop`` is set; return the rest."""
    deadline = time.monotonic() + timeout_s
    going = [run for run in runs if not run.done()]
    while going and not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        going[0].wait(min(left, 0.1))
        going = [run for run in going if not run.done()]
    return going


def _abandoned(status: RunStatus, waited_s: float) -> RunStatus:
    """The cancelled status of a run that ignored cancel, as its process exits."""
    now = time.time()
    stages = tuple(
        replace(s, state=StageState.CANCELLED, finished_at=now)
        if s.state is StageState.RUNNING else
        replace(s, state=StageState.SKIPPED, finished_at=now)
        if s.state is StageState.PENDING else s
        for s in status.stages)
    note = (f"the service shut down; the run did not stop within {waited_s:g} s of cancel "
            "and ended with its process")
    return replace(status, state=RunState.CANCELLED, stages=stages, finished_at=now,
                   updated_at=now, logs=(*status.logs, note))


def serve(pipelines: Any = (), *, host: str = "127.0.0.1", port: int = 8750,
          adopt: bool = True, **options: Any) -> Service:
    """Serve the status API from a background thread of this process (a notebook kernel).

    Every run this process starts from now on is published too (``adopt=True``), so an
    outside front end can watch the notebook's runs; ``pipelines`` can also be started
    over HTTP. Returns the started ``Service``: clients send its ``token`` (generated
    unless given) as ``Authorization: Bearer <token>``; call ``stop()`` to end it.
    """
    return Service(pipelines, host=host, port=port, adopt=adopt, **options).start()
