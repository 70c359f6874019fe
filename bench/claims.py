"""Idempotency-Key claims in the memory store: the cost of one claim by live keys held.

Each claim runs on the server's event loop, so its cost must not grow with the number of
keys held: it was a rebuild of every claim (O(n): 45 us at 1k keys, 3.6 ms at 36k); it
is now a heap of expiries (O(log n)). The old rebuild is measured too, for reference.

Run: ``.venv/bin/python -m bench.claims [--sizes 1000 10000 36000]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from stagewidget.service import MemoryStore

from .common import write_json


class RebuildingClaims:
    """The claim of the memory store before the fix: rebuilds the dict on every call."""

    def __init__(self) -> None:
        self._claims: dict[str, tuple[str, float]] = {}

    def claim(self, key: str, value: str, ttl_s: float) -> str | None:
        now = time.time()
        old = self._claims.get(key)
        if old is not None and old[1] > now:
            return old[0]
        self._claims = {k: v for k, v in self._claims.items() if v[1] > now}
        self._claims[key] = (value, now + ttl_s)
        return None


def median_claim_us(store: Any, live: int, samples: int) -> float:
    """Fill ``store`` with ``live`` keys, then time ``samples`` claims of new keys."""
    for n in range(live):
        store.claim(f"idem:bench:{n}", f"run-{n} fp", 3600.0)
    took = []
    for n in range(samples):
        start = time.perf_counter_ns()
        store.claim(f"idem:bench:new-{n}", f"new-{n} fp", 3600.0)
        took.append(time.perf_counter_ns() - start)
    return statistics.median(took) / 1000


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.claims", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 36_000])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"median_us_per_claim": {}}
    print(f"median us per claim of a new key, by live keys held ({args.samples} claims, "
          "the old rebuild with at most 200)")
    print(f"{'live keys':>10} {'heap (now)':>11} {'rebuild (before)':>17}")
    for live in args.sizes:
        now = median_claim_us(MemoryStore(), live, args.samples)
        before = median_claim_us(RebuildingClaims(), live, min(args.samples, 200))
        result["median_us_per_claim"][live] = {"heap": now, "rebuild": before}
        print(f"{live:>10} {now:>11.2f} {before:>17.1f}")
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
