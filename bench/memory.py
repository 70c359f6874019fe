"""Memory held by finished runs: 200 runs each returning 50 MB, none of them kept.

Each variant runs in a fresh interpreter (a subprocess), so its resident set size (RSS)
starts clean: the figures are RSS at the start (stagewidget imported), its peak (the
kernel's high-water mark, VmHWM) and at the end (the runs' threads ended), then again
after an explicit ``gc.collect()``. Variants: no observer, and an observer that keeps
the latest snapshot it got (as a notebook widget does). The engine keeps the last 5
runs strongly, so the goal is an end RSS near start + 5 x 50 MB.

Run: ``.venv/bin/python -m bench.memory [--runs 200] [--mb 50] [--repeats 1]``.
Linux only (reads ``/proc/self/status``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

from .common import write_json

VARIANTS = ("none", "latest")


def _rss_mb() -> dict[str, float]:
    """Current and peak resident set size of this process, in MB."""
    values = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return {"rss": values["VmRSS"], "peak": values["VmHWM"]}


class _Latest:
    """An observer keeping the latest snapshot it got, as a widget view does."""

    def __init__(self) -> None:
        self.status: Any = None

    def __call__(self, status: Any) -> None:
        self.status = status


def child(runs: int, mb: int, observer: str) -> dict[str, float]:
    """Start ``runs`` runs returning ``mb`` MB each, keep none; return RSS figures."""
    import gc
    import threading

    import stagewidget as sw

    size = mb * 2**20

    def produce(_: Any) -> bytes:
        return b"\x01" * size  # written, so its pages are resident

    pipe = sw.Pipeline("memory", [produce])
    start = _rss_mb()["rss"]
    views = []
    for _ in range(runs):
        view = _Latest() if observer == "latest" else False
        if view:
            views.append(view)  # the views outlive their runs, as widgets in a notebook do
        pipe.start(None, display=view).wait(60)
    for thread in threading.enumerate():
        if thread.name.startswith("stagewidget-"):
            thread.join(60)
    end = _rss_mb()
    gc.collect()
    collected = _rss_mb()["rss"]
    return {"start_mb": start, "peak_mb": end["peak"], "end_mb": end["rss"],
            "end_after_gc_mb": collected}


def measure(runs: int, mb: int, observer: str) -> dict[str, float]:
    """Run ``child`` in a fresh interpreter; return its figures."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--child", observer, "--runs", str(runs),
         "--mb", str(mb)], capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.runs, args.mb, args.child)))
        return {}
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:  # interleaved: noise hits both alike
            samples[variant].append(measure(args.runs, args.mb, variant))
    print(f"{args.runs} runs returning {args.mb} MB each, none kept "
          f"(RSS in MB, median of {args.repeats}):")
    print(f"{'observer':<10}{'start':>9}{'peak':>9}{'end':>9}{'after gc':>10}")
    result: dict[str, Any] = {"runs": args.runs, "mb": args.mb}
    for variant, rows in samples.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        result[variant] = med
        print(f"{variant:<10}{med['start_mb']:>9.0f}{med['peak_mb']:>9.0f}"
              f"{med['end_mb']:>9.0f}{med['end_after_gc_mb']:>10.0f}")
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
