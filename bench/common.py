"""What every benchmark shares: the machine's description and the JSON output."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from typing import Any

__all__ = ["machine", "percentile", "write_json"]


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
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
