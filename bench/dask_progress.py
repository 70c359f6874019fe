"""Progress from Dask workers: how late it reaches the run's status, and what track() costs.

On a LocalCluster (2 worker processes, 127.0.0.1):

1. Latency. Dask's own channel (``Worker.log_event`` -> ``Client.subscribe_topic``) alone;
   then stagewidget end to end: a stage on the cluster calls ``sw.report(sent=time())``
   every 20 ms and an observer of the run in this process notes ``now - sent`` for each
   value it sees. That path includes the worker's coalescing (at most ``refresh_hz``
   events a second, default 4) and the run's own refresh (10 Hz), so it is quoted for
   refresh_hz 4 and 20. Same machine, same clock.
2. Overhead per item of ``sw.track()`` in a stage running on a worker, beside a bare loop
   and tqdm (writing to os.devnull) in the same task: interleaved repeats, medians.

Run: ``.venv/bin/python -m bench.dask_progress`` (about a minute).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import threading
import time
from typing import Any

import stagewidget as sw
from stagewidget.engine.cluster import DaskExecutor

from .common import percentile as _pct
from .common import write_json


def _raw_events(count: int) -> None:
    from distributed import get_worker

    worker = get_worker()
    for _ in range(count):
        worker.log_event("bench-raw", time.time())
        time.sleep(0.01)


def raw_latency(client: Any, count: int) -> list[float]:
    """Seconds from ``log_event`` on a worker to the subscribed handler here."""
    delays: list[float] = []
    got_all = threading.Event()

    def handler(event: tuple[float, float]) -> None:
        delays.append(time.time() - event[1])
        if len(delays) >= count:
            got_all.set()

    client.subscribe_topic("bench-raw", handler)
    client.submit(_raw_events, count, pure=False).result()
    got_all.wait(30)
    client.unsubscribe_topic("bench-raw")
    return delays


def _reporting_stage(seconds: float) -> int:
    end, sent = time.time() + seconds, 0
    while time.time() < end:
        sw.report(sent=time.time())
        sent += 1
        time.sleep(0.02)
    return sent


def stage_latency(client: Any, refresh_hz: float, seconds: float) -> list[float]:
    """Seconds from ``sw.report`` on a worker to an observer of the run here."""
    delays: list[float] = []
    seen: set[float] = set()

    def observe(status: sw.RunStatus) -> None:
        sent = status.stages[0].metrics.get("sent")
        if isinstance(sent, float) and sent not in seen and status.state.value == "running":
            seen.add(sent)
            delays.append(time.time() - sent)

    executor = DaskExecutor(client, refresh_hz=refresh_hz)
    sw.Pipeline("latency", [_reporting_stage]).run(seconds, executor=executor, display=observe)
    return delays


def _loops(n: int, repeats: int) -> dict[str, list[float]]:
    """Runs as a stage on a worker: ns per item of each variant, interleaved repeats."""
    import tqdm

    devnull = io.TextIOWrapper(io.BufferedWriter(io.FileIO(os.devnull, "w")))
    variants = {
        "bare loop": lambda data: data,
        "sw.track": lambda data: sw.track(data),
        "tqdm": lambda data: tqdm.tqdm(data, file=devnull),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name in random.sample(list(variants), len(variants)):
            data = range(n)
            start = time.perf_counter()
            total = 0
            for x in variants[name](data):
                total += x
            times[name].append((time.perf_counter() - start) / n * 1e9)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dask_progress")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None,
                           scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    result: dict[str, Any] = {}
    with Client(cluster) as client:
        raw = raw_latency(client, args.events)
        print("Progress latency, worker -> this process (ms):")
        print(f"{'path':<44}{'samples':>8}{'p50':>8}{'p95':>8}{'max':>8}")
        rows = [("Dask log_event -> subscribe_topic", raw)]
        for hz in (4.0, 20.0):
            rows.append((f"sw.report -> run status (refresh_hz={hz:g})",
                         stage_latency(client, hz, args.seconds)))
        for name, delays in rows:
            ms = [d * 1e3 for d in delays]
            result[name] = {"p50_ms": _pct(ms, .5), "p95_ms": _pct(ms, .95), "max_ms": max(ms)}
            print(f"{name:<44}{len(ms):>8}{_pct(ms, .5):>8.1f}{_pct(ms, .95):>8.1f}"
                  f"{max(ms):>8.1f}")
        times = sw.Pipeline("overhead", [lambda _: _loops(args.n, args.repeats)]).run(
            None, executor=client, display=False)
    cluster.close()
    print()
    print(f"Per item on a worker, {args.n:,} items, median of {args.repeats} interleaved "
          "repeats (loop body: an addition):")
    bare = statistics.median(times["bare loop"])
    tqdm_ns = statistics.median(times["tqdm"])
    print(f"{'variant':<12}{'ns/item':>10}{'overhead ns':>13}{'overhead / tqdm':>17}")
    for name, values in times.items():
        ns = statistics.median(values)
        over = ns - bare
        ratio = over / (tqdm_ns - bare) if name != "bare loop" else float("nan")
        result[f"loop:{name}"] = {"ns_per_item": ns, "overhead_ns": over}
        print(f"{name:<12}{ns:>10.1f}{over:>13.1f}{ratio:>17.3f}")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
