"""Service test harness: a real redis-server, SQLite files, services in this process or
others (fixtures)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import svc_pipelines
from conftest import WAIT_S
from servers import RedisServer, free_port, wait_until

from stagewidget.service import Service

HERE = Path(__file__).parent
__all__ = ["HERE", "RedisServer", "auth", "free_port", "wait_until"]  # and the fixtures


def auth(service) -> dict[str, str]:
    """The headers that carry ``service``'s token (a ``Service`` or a ``ServiceProcess``)."""
    return {"Authorization": f"Bearer {service.token}"}


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(params=["memory", "redis", "sqlite"])
def store_kind(request) -> str:
    return request.param


def store_options(request, kind: str, prefix: str) -> dict[str, str]:
    """The ``Service`` options for a store of ``kind``: the session's redis-server (under
    ``prefix``) or a SQLite file in the test's tmp dir (one per test, shared by its
    services)."""
    if kind == "redis":
        return {"redis": request.getfixturevalue("redis_server").url, "prefix": prefix}
    if kind == "sqlite":
        return {"store": f"sqlite:///{request.getfixturevalue('tmp_path') / 'runs.db'}"}
    return {}


def make_store(request, kind: str, prefix: str):
    """A store of ``kind`` as ``store_options`` places it (the caller closes it)."""
    from stagewidget.service.server import make_store as make

    options = store_options(request, kind, prefix)
    return make(options.get("store") or options.get("redis"), prefix=prefix)


@pytest.fixture
def prefix() -> str:
    return f"sw-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_service(request, prefix):
    """Start in-process services (port 0) on the memory, Redis or SQLite store; stop them.

    Each has a generated token (``service.token``; send ``headers=auth(service)``).
    """
    started: list[Service] = []

    def make(kind: str, **options) -> Service:
        options = {"adopt": False, **store_options(request, kind, prefix), **options}
        service = Service(svc_pipelines.PIPELINES, port=0, **options).start()
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


@pytest.fixture
def service(make_service, store_kind) -> Service:
    return make_service(store_kind)


@pytest.fixture
def client(service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as http:
        yield http


class ServiceProcess:
    """``python -m stagewidget serve svc_pipelines:PIPELINES`` in its own process.

    Its store is ``store``: a Redis URL (given as ``--redis``, the older flag) or any other
    ``--store`` value. Its token comes from ``$STAGEWIDGET_TOKEN`` (``self.token``;
    ``self.http`` sends it).
    """

    def __init__(self, store: str, prefix: str, *extra: str,
                 pipelines: str = "svc_pipelines:PIPELINES") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_urlsafe(16)
        env = dict(os.environ, PYTHONPATH=str(HERE), STAGEWIDGET_TOKEN=self.token)
        # A file, not a pipe nobody reads: the access log would fill a pipe and block it.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self._final: str | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stagewidget", "serve", pipelines,
             "--port", str(self.port),
             "--redis" if store.startswith("redis://") else "--store", store, *extra],
            cwd=HERE, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.prefix = prefix
        self.http = httpx.Client(base_url=self.url, timeout=WAIT_S, headers=auth(self))

        def healthy() -> bool:
            assert self.proc.poll() is None, self.output()
            try:
                return self.http.get("/api/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, what=f"the service on port {self.port}")

    def output(self) -> str:
        """What the process has written so far (stdout and stderr)."""
        if self._final is not None:
            return self._final
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def terminate(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Send ``sig``; wait for the process to exit; return its exit code and output."""
        self.proc.send_signal(sig)
        code = self.proc.wait(WAIT_S)
        return code, self.output()

    def stop(self, *, kill: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            self.proc.wait(WAIT_S)
        self.http.close()
        if self._final is None:
            self._final = self.output()
            self._log.close()


@pytest.fixture
def service_process(redis_server):
    """Start ``python -m stagewidget serve`` processes on the test's Redis; all stopped after."""
    yield from _processes(redis_server.url)


@pytest.fixture
def sqlite_process(tmp_path):
    """Like ``service_process``, on one SQLite file (``sqlite_process.url``) per test."""
    yield from _processes(f"sqlite:///{tmp_path / 'runs.db'}")


def _processes(url: str) -> Iterator[Any]:
    started: list[ServiceProcess] = []

    def make(*extra: str, **options: str) -> ServiceProcess:
        process = ServiceProcess(url, "stagewidget", *extra, **options)
        started.append(process)
        return process

    make.url = url  # type: ignore[attr-defined]
    yield make
    for process in started:
        process.stop(kill=True)


def read_events(response: httpx.Response, timeout: float | None = None
                ) -> Iterator[tuple[str, dict]]:
    """Parse a Server-Sent Events stream into (event, JSON data) pairs.

    With ``timeout``, fail once it has passed (the stream's keep-alive comments wake the
    check while no event comes).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    event, data = "message", []
    for line in response.iter_lines():
        assert deadline is None or time.monotonic() < deadline, \
            f"no awaited event within {timeout} s"
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
