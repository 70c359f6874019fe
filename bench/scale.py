"""Scale: 1,000 runs started at once in one process: threads, memory per run, all finish,
thread count back to baseline; memory per finished run kept for its status.

``--observed`` subscribes an observer (as a view would) to every run, so their snapshots
are delivered and sampled (by one ticker thread for all runs; before it, one notifier
thread per run).
Run: ``.venv/bin/python -m bench.scale [--runs 1000] [--observed]``
"""

from __future__ import annotations

import argparse
import gc
import threading
import time
from typing import Any

import stagewidget as sw

from .common import write_json


def rss_kib() -> int:
    """Resident memory of this process, from /proc (Linux)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--observed", action="store_true",
                        help="subscribe an observer to every run (as a view would)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    gate = threading.Event()
    delivered = [0]

    def observer(status: sw.RunStatus) -> None:
        delivered[0] += 1  # a figure for the report (exact when one thread delivers)

    def hold(x: int) -> int:
        gate.wait()
        return sum(sw.track(range(1000)))

    def report(total: int) -> int:
        sw.report(total=total)
        return total

    pipe = sw.Pipeline("scale", [hold, report])
    gc.collect()
    base_threads, base_rss = threading.active_count(), rss_kib()
    start = time.perf_counter()
    display = observer if args.observed else False
    runs = [pipe.start(i, display=display) for i in range(args.runs)]
    started_s = time.perf_counter() - start
    peak_threads, live_rss = threading.active_count(), rss_kib()
    gate.set()
    results = [run.result(120) for run in runs]
    all_s = time.perf_counter() - start
    for thread in threading.enumerate():
        if thread.name.startswith("stagewidget-"):
            thread.join(30)
    gc.collect()
    after_threads, done_rss = threading.active_count(), rss_kib()
    figures = {
        "runs": args.runs,
        "observed": args.observed,
        "deliveries": delivered[0],
        "all_succeeded": all(r == 499500 for r in results),
        "start_all_s": round(started_s, 3),
        "finish_all_s": round(all_s, 3),
        "threads_baseline": base_threads,
        "threads_peak": peak_threads,
        "threads_after": after_threads,
        "kib_per_live_run": round((live_rss - base_rss) / args.runs, 1),
        "kib_per_finished_run": round((done_rss - base_rss) / args.runs, 1),
    }
    print(f"scale: {args.runs} runs started at once"
          + (", each with an observer" if args.observed else ""))
    for key, value in figures.items():
        print(f"  {key:22s} {value}")
    write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
