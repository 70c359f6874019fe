"""Per-iteration overhead of ``sw.track()`` beside a bare loop, ``enumerate``, tqdm,
tqdm.notebook, rich.progress.track and fastprogress, all measured in the same run.

stagewidget's loops run inside a running stage of a real pipeline with an observer
subscribed, so the ticker samples them at 10 Hz as it does under a live view.
Variants are interleaved (each repeat runs every variant once, in a shuffled order) and
the medians are compared. Other bars write to os.devnull (enabled, as in a terminal).
Run: ``.venv/bin/python -m bench.track_overhead [--n 2000000] [--repeats 7]``
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import random
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import stagewidget as sw

from .common import per_item_main

Loop = Callable[[Iterable[int]], Iterable[int]]


def timed(wrap: Loop, source: Callable[[], Iterable[int]]) -> float:
    """Seconds to iterate ``wrap(source())``; the source is built before the clock."""
    data = source()
    start = time.perf_counter()
    for _ in wrap(data):
        pass
    return time.perf_counter() - start


def in_stage(wrap: Loop, source: Callable[[], Iterable[int]]) -> float:
    """``timed`` inside a running stage, with an observer subscribed."""
    run = sw.Pipeline("bench", [lambda _: timed(wrap, source)]).start(None, display=False)
    run.subscribe(lambda status: None)
    return run.result()


def advancing(data: Iterable[int]) -> Iterable[int]:
    for item in data:
        sw.advance()
        yield item


def variants(devnull: io.TextIOBase, n: int
             ) -> dict[str, Callable[[Callable[[], Iterable[int]]], float]]:
    """Name -> measurement of one loop over a fresh source."""
    import fastprogress
    import rich.console
    import rich.progress
    import tqdm
    import tqdm.notebook

    console = rich.console.Console(file=devnull, force_terminal=True)
    return {
        "bare loop": lambda src: timed(lambda d: d, src),
        "enumerate": lambda src: timed(enumerate, src),
        "sw.track (in a running stage)": lambda src: in_stage(sw.track, src),
        "sw.advance() per item (info)": lambda src: in_stage(advancing, src),
        "tqdm": lambda src: timed(lambda d: tqdm.tqdm(d, file=devnull, disable=False), src),
        "tqdm.notebook": lambda src: timed(lambda d: tqdm.notebook.tqdm(d, disable=False), src),
        "rich.progress.track": lambda src: timed(
            lambda d: rich.progress.track(d, console=console, total=None), src),
        "fastprogress": lambda src: timed(lambda d: fastprogress.progress_bar(d, total=n), src),
    }


def measure(n: int, repeats: int, source: Callable[[], Iterable[int]]) -> dict[str, float]:
    """Median ns per item of every variant over ``source``."""
    devnull = open(os.devnull, "w")  # noqa: SIM115  (kept open for the whole run)
    table = variants(devnull, n)
    samples: dict[str, list[float]] = {name: [] for name in table}
    with contextlib.redirect_stdout(devnull):  # tqdm.notebook and fastprogress print
        for _ in range(repeats):
            for name, run in random.sample(list(table.items()), len(table)):
                gc.collect()
                samples[name].append(run(source) / n * 1e9)
    devnull.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def report(title: str, medians: dict[str, float]) -> dict[str, Any]:
    bare = medians["bare loop"]
    tqdm_over = medians["tqdm"] - bare
    print(title)
    print(f"  {'variant':32s} {'ns/item':>9s} {'overhead':>9s} {'vs tqdm':>8s}")
    for name, value in medians.items():
        over = value - bare
        print(f"  {name:32s} {value:9.1f} {over:+9.1f} {over / tqdm_over:8.2f}")
    ours = medians["sw.track (in a running stage)"] - bare
    print(f"  sw.track overhead = {ours / tqdm_over:.3f} of tqdm's (target <= 0.10)")
    return {"ns_per_item": medians, "ratio_to_tqdm": ours / tqdm_over}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return per_item_main(argv, __doc__, 2_000_000, measure, report)


if __name__ == "__main__":
    main()
