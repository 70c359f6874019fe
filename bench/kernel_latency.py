"""Kernel responsiveness: round-trip latency of trivial execute requests sent every
100 ms to a real ipykernel while a pipeline runs in the background, by executor.

Run: ``.venv/bin/python -m bench.kernel_latency [--seconds 5]``
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

from .common import write_json
from .kernel import BenchKernel

SETUP = """
import sys, threading, time
import numpy as np
import stagewidget as sw

def pure_python(seconds):
    end = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < end:
        for i in range(20_000):
            total += i * i % 7
    return total

def pure_python_stage(seconds):
    end = time.perf_counter() + seconds
    chunks = 0
    for _ in sw.track(iter(int, 1), desc="chunks"):
        total = 0
        for i in range(20_000):
            total += i * i % 7
        chunks += 1
        if time.perf_counter() > end:
            return chunks  # work done in the time: the stage's throughput

def numpy_stage(seconds):
    end = time.perf_counter() + seconds
    m = np.random.default_rng(0).random((300, 300))
    for _ in sw.track(iter(int, 1), desc="matmul"):
        m @ m  # BLAS releases the GIL
        if time.perf_counter() > end:
            return 0

default_interval = sys.getswitchinterval()
"""

SCENARIOS = {
    "idle kernel": None,
    "numpy, thread executor": "job = sw.Pipeline('np', [numpy_stage]).start({s}, display=False)",
    "pure Python, bare thread (no stagewidget)":
        "job = threading.Thread(target=pure_python, args=({s},)); job.start()",
    "pure Python, thread executor":
        "job = sw.Pipeline('py', [pure_python_stage]).start({s}, display=False)",
    "pure Python, thread executor, switchinterval 0.0002":
        "sys.setswitchinterval(0.0002); "
        "job = sw.Pipeline('py', [pure_python_stage]).start({s}, display=False)",
    "pure Python, process executor":
        "job = sw.Pipeline('py', [pure_python_stage]).start({s}, executor='process', "
        "display=False)",
}
WAIT = ("sys.setswitchinterval(default_interval); "
        "job.join() if isinstance(job, threading.Thread) else job.wait()")


def probe(kernel: BenchKernel, seconds: float) -> list[float]:
    """Send ``pass`` every 100 ms for ``seconds``; return the round trips in ms."""
    samples, tick = [], threading.Event()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(kernel.round_trip_s() * 1000)
        tick.wait(0.1)  # the probe's cadence, not a synchronisation
    return samples


def _value(kernel: BenchKernel, name: str) -> int:
    reply = kernel.execute(f"_sw_bench = {name}", timeout=60)
    del reply
    msg_id = kernel.client.execute("", user_expressions={"v": "_sw_bench"})
    while True:
        reply = kernel.client.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            return int(reply["content"]["user_expressions"]["v"]["data"]["text/plain"])


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
            "max_ms": round(ordered[-1], 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    kernel = BenchKernel()
    results: dict[str, dict[str, float]] = {}
    try:
        kernel.execute(SETUP)
        for name, start in SCENARIOS.items():
            if start is not None:
                kernel.execute(start.format(s=args.seconds + 1))
            results[name] = summary(probe(kernel, args.seconds))
            if start is not None:
                kernel.execute(WAIT)
                if "executor" in name and "pure Python" in name:
                    kernel.execute("chunks = job.result()")
                    results[name]["chunks"] = _value(kernel, "chunks")
    finally:
        kernel.close()
    idle = results["idle kernel"]["p95_ms"]
    print("kernel round-trip latency of `pass`, sent every 100 ms while a pipeline runs")
    print(f"  {'scenario':54s} {'p50':>7s} {'p95':>7s} {'max':>7s} {'p95/idle':>9s}")
    for name, row in results.items():
        print(f"  {name:54s} {row['p50_ms']:7.1f} {row['p95_ms']:7.1f} {row['max_ms']:7.1f} "
              f"{row['p95_ms'] / idle:9.2f}")
    base = results["pure Python, thread executor"].get("chunks")
    fast = results["pure Python, thread executor, switchinterval 0.0002"].get("chunks")
    if base and fast:
        print(f"  pure-Python stage throughput with switchinterval 0.0002 vs default: "
              f"{fast / base:.2f}x (same seconds of work)")
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
