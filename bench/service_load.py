"""The status service under load, beside the origin design's Flask dev-server pattern.

1. Status GETs per second: 8 keep-alive connections read one run's status for a few
   seconds; stagewidget's service (memory, Redis and SQLite stores) and the Flask origin,
   each in its own process, rounds interleaved; medians of the rounds. ``ours-sqlite-b`` is
   a second service process on the same SQLite file, serving the runs of ``ours-sqlite``:
   its event streams follow them by polling the database (every 0.2 s).
2. 100 live watchers of one running run for 6 s: stagewidget streams Server-Sent Events
   (pushed at most 10 times a second); the Flask origin can only be polled, so 100 clients
   poll it 10 times a second. Quoted: what the watchers received, how old the status was
   when it arrived (receive time minus the status's own update time: same clock), and the
   CPU seconds the server process used.

Run: ``.venv/bin/python -m bench.service_load`` (about 2 minutes; needs redis-server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import percentile as _pct
from .common import write_json

ROOT = Path(__file__).parents[1]
# The service requires a token (the Flask origin ignores the header): one per bench run.
TOKEN = secrets.token_urlsafe(32)
AUTH = f"Authorization: Bearer {TOKEN}\r\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server process: ``ours`` (memory, Redis or SQLite store) or the Flask origin.

    With ``owner``, runs are started through that server and read through this one.
    """

    def __init__(self, kind: str, store: str | None = None, owner: Server | None = None
                 ) -> None:
        self.kind, self.port = kind, _free_port()
        self.owner_port = owner.port if owner is not None else self.port
        if kind == "flask":
            args = [sys.executable, "-m", "bench.flask_origin", str(self.port)]
        else:
            args = [sys.executable, "-m", "stagewidget", "serve",
                    "bench.service_pipelines:PIPELINES", "--port", str(self.port),
                    "--drain-s", "0"]  # the watched run is cancelled at once on stop()
            if store:
                args += ["--store", store]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     env=dict(os.environ, STAGEWIDGET_TOKEN=TOKEN))
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"{kind} server did not start") from None
                time.sleep(0.05)

    def cpu_s(self) -> float:
        import psutil

        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def start_path(self) -> str:
        return "/start" if self.kind == "flask" else "/api/pipelines/work/runs"

    def status_path(self, run_id: str) -> str:
        return f"/status/{run_id}" if self.kind == "flask" else f"/api/runs/{run_id}"

    def start_run(self, steps: int, step_s: float) -> str:
        import httpx

        body = httpx.post(f"http://127.0.0.1:{self.owner_port}{self.start_path()}",
                          json={"steps": steps, "step_s": step_s}, timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"}).json()
        return body.get("task_id") or body["run_id"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str,
                   port: int) -> tuple[bytes, bool]:
    """One keep-alive GET; return (body, whether the server keeps the connection)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{AUTH}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length)
    keep = lines[0].startswith("HTTP/1.1") and headers.get("connection", "").lower() != "close"
    return body, keep


class _Client:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes it.

    Werkzeug's dev server speaks HTTP/1.0: there it is a connection per request.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str) -> bytes:
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", self.port)
        body, keep = await _request(*self.streams, path, self.port)
        if not keep:
            self.close()
        return body

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def _get_load(port: int, path: str, connections: int, duration_s: float
                    ) -> tuple[int, list[float]]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration_s

    async def worker() -> None:
        client = _Client(port)
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            await client.get(path)
            latencies.append(time.perf_counter() - t0)
        client.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return len(latencies), latencies


async def _sse_watchers(port: int, path: str, watchers: int, duration_s: float
                        ) -> tuple[int, list[float]]:
    ages: list[float] = []

    async def watch() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{AUTH}\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        stop_at = time.time() + duration_s
        while time.time() < stop_at:
            try:
                line = await asyncio.wait_for(reader.readline(), stop_at - time.time())
            except TimeoutError:
                break
            if line.startswith(b"data: {") and b'"updated_at"' in line:
                # chunked encoding: the data line arrives whole inside one chunk
                ages.append(time.time() - json.loads(line[6:])["updated_at"])
        writer.close()

    await asyncio.gather(*(watch() for _ in range(watchers)))
    return len(ages), ages


async def _pollers(port: int, path: str, watchers: int, duration_s: float, hz: float
                   ) -> tuple[int, list[float]]:
    ages: list[float] = []
    stop_at = time.time() + duration_s

    async def poll() -> None:
        client = _Client(port)
        while time.time() < stop_at:
            t0 = time.time()
            body = await client.get(path)
            ages.append(time.time() - json.loads(body)["updated_at"])
            await asyncio.sleep(max(0.0, 1 / hz - (time.time() - t0)))
        client.close()

    await asyncio.gather(*(poll() for _ in range(watchers)))
    return len(ages), ages


def _redis() -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", tempfile.mkdtemp()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.service_load")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--get-s", type=float, default=4.0)
    parser.add_argument("--watch-s", type=float, default=6.0)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    redis = _redis()
    sqlite_dir = tempfile.mkdtemp(prefix="stagewidget-bench-")
    sqlite_url = f"sqlite:///{sqlite_dir}/runs.db"
    kinds = ["ours-memory"] + (["ours-redis"] if redis else []) + [
        "ours-sqlite", "ours-sqlite-b", "flask"]
    servers: dict[str, Server] = {}
    for kind in kinds:
        if kind == "flask":
            servers[kind] = Server("flask")
        elif kind.startswith("ours-sqlite"):
            servers[kind] = Server("ours", sqlite_url, owner=servers.get("ours-sqlite"))
        else:
            servers[kind] = Server("ours", redis[1] if kind == "ours-redis" and redis else None)
    result: dict[str, Any] = {"get": {}, "watch": {}}
    try:
        finished = {}
        for kind, server in servers.items():  # one small finished run each, to read
            run_id = server.start_run(3, 0.0)
            finished[kind] = run_id
        time.sleep(1.0)  # let each finish (the Flask origin has no way to wait for it)
        rates: dict[str, list[float]] = {k: [] for k in kinds}
        lat: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(args.rounds):
            for kind, server in servers.items():
                count, latencies = asyncio.run(_get_load(
                    server.port, server.status_path(finished[kind]), 8, args.get_s))
                rates[kind].append(count / args.get_s)
                lat[kind] += latencies
        print(f"Status GETs, 8 keep-alive connections, {args.rounds} x {args.get_s:g} s "
              "interleaved (load generator on the same 2 cores):")
        print(f"{'server':<14}{'req/s (median)':>16}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'vs flask':>10}")
        flask_rate = statistics.median(rates["flask"])
        for kind in kinds:
            rate = statistics.median(rates[kind])
            result["get"][kind] = {"req_s": rate, "p50_ms": _pct(lat[kind], 0.5) * 1e3,
                                   "p99_ms": _pct(lat[kind], 0.99) * 1e3}
            print(f"{kind:<14}{rate:>16,.0f}{_pct(lat[kind], .5) * 1e3:>9.2f}"
                  f"{_pct(lat[kind], .99) * 1e3:>9.2f}{rate / flask_rate:>9.2f}x")
        print()
        print(f"{args.watchers} watchers of one running run for {args.watch_s:g} s "
              "(status age = receive time - status update time):")
        print(f"{'server':<14}{'how':<18}{'received':>9}{'age p50 ms':>12}{'age p95 ms':>12}"
              f"{'server CPU s':>14}")
        for kind, server in servers.items():
            run_id = server.start_run(100_000, 0.005)
            time.sleep(0.3)
            cpu0 = server.cpu_s()
            if kind == "flask":
                how = "polling at 10 Hz"
                count, ages = asyncio.run(_pollers(server.port, server.status_path(run_id),
                                                   args.watchers, args.watch_s, 10.0))
            else:
                how = "SSE (polled 0.2 s)" if kind == "ours-sqlite-b" else "SSE (push)"
                count, ages = asyncio.run(_sse_watchers(
                    server.port, server.status_path(run_id) + "/events", args.watchers,
                    args.watch_s))
            cpu = server.cpu_s() - cpu0
            result["watch"][kind] = {"how": how, "received": count,
                                     "age_p50_ms": _pct(ages, 0.5) * 1e3,
                                     "age_p95_ms": _pct(ages, 0.95) * 1e3, "cpu_s": cpu}
            print(f"{kind:<14}{how:<18}{count:>9,}{_pct(ages, .5) * 1e3:>12.1f}"
                  f"{_pct(ages, .95) * 1e3:>12.1f}{cpu:>14.2f}")
    finally:
        for server in servers.values():
            server.stop()
        if redis:
            redis[0].terminate()
            redis[0].wait(10)
        shutil.rmtree(sqlite_dir, ignore_errors=True)
    write_json(args.json, result)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
