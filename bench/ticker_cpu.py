"""Delivery CPU: the CPU time the thread delivering a run's snapshots spends per second
of a running view, as % of one core. One run, a busy ``sw.track`` loop, a widget-like
observer (it formats the run and stage lines a view shows) at the run's 10 Hz.

The figure is ``time.thread_time()`` read inside the delivering thread (by the observer
itself, at each call) over the measured window, divided by the window's wall time: the
thread's own CPU, which the machine's other load cannot inflate, unlike wall clock. The
ticker's watchdog thread (if any) is read through ``time.pthread_getcpuclockid``.
Run: ``.venv/bin/python -m bench.ticker_cpu [--seconds 10] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

import stagewidget as sw
from stagewidget.views import format as fmt

from .common import write_json


def _cpu_of(thread: threading.Thread) -> float | None:
    """The CPU seconds of another thread (Linux), or None."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident or 0))
    except (AttributeError, OSError):
        return None


def one_view(seconds: float, widget_like: bool) -> dict[str, float]:
    """Run one busy stage for ``seconds`` with one observer; measure its thread's CPU."""
    samples: list[tuple[float, float, str]] = []  # (wall, thread CPU, thread name)
    stop = threading.Event()

    def observer(status: sw.RunStatus) -> None:
        if widget_like:
            fmt.run_line(status)
            for stage in status.stages:
                fmt.stage_line(stage)
        samples.append((time.monotonic(), time.thread_time(), threading.current_thread().name))

    def busy(_: Any) -> int:
        n = 0
        for _ in sw.track(iter(int, 1), desc="busy"):
            n += 1
            if not n & 0xFFFF and stop.is_set():
                break
        return n

    run = sw.Pipeline("cpu", [busy]).start(None, display=observer, refresh_hz=10.0)
    time.sleep(1.0)  # warm up: the view has drawn and the loop runs at its pace
    watchdogs = [t for t in threading.enumerate() if t.name == "stagewidget-ticker-watchdog"]
    first = len(samples)
    dog0 = [_cpu_of(t) for t in watchdogs]
    time.sleep(seconds)
    last = len(samples)
    dog1 = [_cpu_of(t) for t in watchdogs]
    stop.set()
    iterations = run.result(60)
    window = [s for s in samples[first - 1:last] if s[2] == samples[last - 1][2]]
    wall = window[-1][0] - window[0][0]
    cpu = window[-1][1] - window[0][1]
    dog = sum(b - a for a, b in zip(dog0, dog1, strict=True) if a is not None and b is not None)
    return {"deliveries_per_s": (len(window) - 1) / wall,
            "delivery_cpu_pct": 100.0 * cpu / wall,
            "cpu_ms_per_delivery": 1000.0 * cpu / max(len(window) - 1, 1),
            "watchdog_cpu_pct": 100.0 * dog / seconds,
            "loop_it_per_s": iterations / (seconds + 1.0)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    for label, widget_like in (("no-op observer", False), ("widget-like observer", True)):
        runs = [one_view(args.seconds, widget_like) for _ in range(args.repeats)]
        medians = {key: round(statistics.median(r[key] for r in runs), 4) for key in runs[0]}
        result[label] = medians
        print(f"ticker CPU per second of a running view, {label} "
              f"(median of {args.repeats} x {args.seconds:g} s):")
        for key, value in medians.items():
            print(f"  {key:20s} {value}")
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
