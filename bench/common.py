"""What every benchmark shares: the machine's description and the JSON output."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["machine", "per_item_main", "percentile", "write_json"]

# Benchmarks measure runs as users get them (run history on), recorded in a throwaway data
# folder rather than the user's history (a kernel a benchmark starts inherits it).
if "STAGEWIDGET_HOME" not in os.environ:
    import tempfile

    os.environ["STAGEWIDGET_HOME"] = tempfile.mkdtemp(prefix="stagewidget-bench-")


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "python": sys.version.split()[0], "platform": platform.platform(),
            "cpu": cpu, "cpus": os.cpu_count()}


def write_json(path: str | None, result: dict[str, Any]) -> None:
    """Write ``result`` (and the machine) to ``path`` when one was given."""
    if path:
        with open(path, "w") as fh:
            json.dump({"machine": machine(), **result}, fh, indent=2, default=str)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by rank; NaN when there are none."""
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def per_item_main(argv: list[str] | None, doc: str | None, default_n: int,
                  measure: Callable[[int, int, Callable[[], Iterable[int]]], dict[str, float]],
                  report: Callable[[str, dict[str, float]], dict[str, Any]]) -> dict[str, Any]:
    """The command line of a per-item benchmark: a range, then a generator, of ``--n`` items."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--n", type=int, default=default_n)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    n = args.n
    result = {
        "range": report(f"per-item cost over range({n:,}) (sequence: its own C iterator)",
                        measure(n, args.repeats, lambda: range(n))),
        "generator": report(f"per-item cost over a generator of {n:,} items (compress path)",
                            measure(n, args.repeats, lambda: (i for i in range(n)))),
    }
    write_json(args.json, result)
    return result
