"""Stage cache: a cache hit for a 50 MB array vs recomputing it, and what storing costs.

A two-stage pipeline: ``make`` computes a ``--mb`` MB float64 array (a seeded random walk,
about the cost of loading and parsing such data), ``scale`` doubles it. Each repeat, in
this order: the pipeline uncached; the cache cleared, then a cold cached run (both stages
run, their outputs hashed and stored); a warm run (both stages loaded, ``scale``'s input
hashed to find its key). Medians of ``--repeats`` interleaved repeats, cache on local disk
under a temporary ``STAGEWIDGET_HOME``. Then, per stage: recomputing it, a hit (its key,
which hashes its input, plus the load) and a store; pickle's dump and load for comparison.
Run: ``.venv/bin/python -m bench.cache``
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np

import stagewidget as sw
from stagewidget.durable.cache import StageCache

from .common import write_json


def make(n: int) -> Any:
    return np.random.default_rng(0).standard_normal(n).cumsum()


def scale(x: Any) -> Any:
    return x * 2


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    n = args.mb * 2**20 // 8
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as home:
        os.environ["STAGEWIDGET_HOME"] = home
        cache = StageCache(Path(home) / "cache")
        uncached = sw.Pipeline("bench-cache", [make, scale])
        cached = sw.Pipeline("bench-cache", [make, scale], cache=cache)
        runs: dict[str, list[float]] = {"uncached": [], "cold (run + store)": [],
                                        "warm (all cached)": []}
        states: list[str] = []
        for _ in range(args.repeats):
            runs["uncached"].append(timed(lambda: uncached.run(n, display=False)))
            cache.clear()
            runs["cold (run + store)"].append(timed(lambda: cached.run(n, display=False)))
            run = cached.start(n, display=False)
            runs["warm (all cached)"].append(timed(run.result))
            states = [s.state.value for s in run.status().stages]
        array = make(n)
        path = Path(home) / "part.joblib"
        parts: dict[str, list[float]] = {
            "recompute make": [], "recompute scale": [],
            "hit make (key + load)": [], "hit scale (key: hash 50 MB + load)": [],
            "store one output (joblib.dump)": [],
            "joblib.dump": [], "joblib.load": [], "pickle.dump (protocol 5)": [],
            "pickle.load": []}
        make_key = cache.key("bench-cache", "make", make, n)
        assert make_key is not None
        for _ in range(args.repeats):
            parts["recompute make"].append(timed(lambda: make(n)))
            parts["recompute scale"].append(timed(lambda: scale(array)))
            parts["hit make (key + load)"].append(timed(
                lambda: cache.load(cache.key("bench-cache", "make", make, n))))  # type: ignore[arg-type]
            parts["hit scale (key: hash 50 MB + load)"].append(timed(
                lambda: cache.load(cache.key("bench-cache", "scale", scale, array))))  # type: ignore[arg-type]
            parts["store one output (joblib.dump)"].append(
                timed(lambda: cache.store(make_key, array)))
            parts["joblib.dump"].append(timed(lambda: joblib.dump(array, path)))
            parts["joblib.load"].append(timed(lambda: joblib.load(make_key.path)))
            with open(path, "wb") as file:
                parts["pickle.dump (protocol 5)"].append(
                    timed(lambda: pickle.dump(array, file, protocol=5)))
            with open(path, "rb") as file:
                parts["pickle.load"].append(timed(lambda: pickle.load(file)))
        size = cache.size_bytes()
    medians = {name: statistics.median(values) for name, values in {**runs, **parts}.items()}
    print(f"{args.mb} MB float64 array, {args.repeats} interleaved repeats, medians")
    print(f"  {'variant':36} {'ms':>9}  vs uncached")
    for name in runs:
        print(f"  {name:36} {medians[name] * 1e3:9.1f}  "
              f"{medians[name] / medians['uncached']:.2f}")
    print(f"  warm run stage states: {states}; cache holds {size / 2**20:.1f} MB")
    print(f"  store cost (cold - uncached): "
          f"{(medians['cold (run + store)'] - medians['uncached']) * 1e3:.1f} ms")
    print("  per stage and part, on the same array:")
    for name in parts:
        print(f"  {name:36} {medians[name] * 1e3:9.1f}")
    result = {"mb": args.mb, "repeats": args.repeats, "states": states,
              "median_s": medians, "cache_bytes": size}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
