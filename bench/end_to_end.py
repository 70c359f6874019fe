"""End-to-end cost: a realistic NumPy pipeline run by stagewidget (with its widget view
subscribed) against the same stage functions called plainly, interleaved, medians.

Run: ``.venv/bin/python -m bench.end_to_end [--repeats 7]``
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import stagewidget as sw

from .common import write_json


def make_stages() -> list[Callable[[Any], Any]]:
    """Three stages: ~1 us, ~50 us and ~1 ms per iteration."""

    def tiny(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        a, out = rng.random(16), np.empty(16)
        for _ in sw.track(range(1_000_000), desc="tiny"):
            np.multiply(a, 1.0000001, out=out)
        return rng.random((200, 200))

    def medium(m: np.ndarray) -> np.ndarray:
        v = np.ones(200)
        for _ in sw.track(range(20_000), desc="medium"):
            v = m @ v
            v /= np.linalg.norm(v)
        return m

    def heavy(m: np.ndarray) -> float:
        acc = 0.0
        for i in sw.track(range(400), desc="heavy"):
            acc += float(np.linalg.svd(m + i, compute_uv=False)[0])
            sw.report(largest=acc / (i + 1))
        return acc

    return [tiny, medium, heavy]


def plain(stages: list[Callable[[Any], Any]], data: Any) -> Any:
    for stage in stages:
        data = stage(data)
    return data


def with_stagewidget(stages: list[Callable[[Any], Any]], data: Any) -> Any:
    from stagewidget.views.widget import RunView

    pipe = sw.Pipeline("e2e", stages)
    # as in a notebook, the view is built before the stages start (no kernel here, so
    # its comm messages go nowhere; the drawing work is all done)
    run = sw.Run(pipe, pipe.stages, data, executor=sw.ThreadExecutor(), refresh_hz=10,
                 clock=time.time)
    RunView(run)
    run.launch()
    return run.result()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    stages = make_stages()
    times: dict[str, list[float]] = {"plain": [], "stagewidget": []}
    plain(stages, 0)  # warm up both paths
    with_stagewidget(stages, 0)
    for r in range(args.repeats):
        order = [("plain", plain), ("stagewidget", with_stagewidget)]
        if r % 2:
            order.reverse()
        for name, fn in order:
            gc.collect()
            start = time.perf_counter()
            fn(stages, r)
            times[name].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in times.items()}
    # each repeat ran both back to back: the median of those paired ratios is the
    # figure least moved by the machine's load drifting over the whole benchmark
    ratio = statistics.median(s / p for s, p in zip(times["stagewidget"], times["plain"]))
    print(f"end-to-end (3 NumPy stages, ~1 us / ~50 us / ~1 ms per iteration), "
          f"{args.repeats} interleaved repeats")
    for name, values in times.items():
        print(f"  {name:12s} median {medians[name]:.3f} s  (min {min(values):.3f}, "
              f"max {max(values):.3f})")
    print(f"  stagewidget / plain, median of paired ratios = {ratio:.4f} "
          f"({(ratio - 1) * 100:+.2f} %), target < +2 %")
    result = {"medians_s": medians, "ratio": ratio, "runs_s": times}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
