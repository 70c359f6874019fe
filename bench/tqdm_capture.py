"""Per-item cost of a tqdm loop captured by a stage, beside plain tqdm, ``sw.track`` and
a bare loop, all measured in the same run.

"plain tqdm" is an enabled bar writing to os.devnull (as in a terminal), outside any
stage. "captured tqdm" is the same call inside a running stage of a real pipeline (an
observer subscribed, so the run samples it at 10 Hz as under a live view): the bar draws
nothing and iterates through ``sw.track``'s fast path. The ``update()`` rows drive a bar
by hand, one ``update()`` per item, as ``progress_apply`` and download loops do.
Variants are interleaved (each repeat runs every variant once, in a shuffled order) and
the medians are compared; the target is a captured loop's overhead <= 0.25x plain tqdm's.
Run: ``.venv/bin/python -m bench.tqdm_capture [--n 1000000] [--repeats 7]``
"""

from __future__ import annotations

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

Source = Callable[[], Iterable[int]]


def timed(loop: Callable[[Iterable[int]], None], source: Source) -> float:
    """Seconds to run ``loop`` over a fresh source; the source is built before the clock."""
    data = source()
    start = time.perf_counter()
    loop(data)
    return time.perf_counter() - start


def in_stage(loop: Callable[[Iterable[int]], None], source: Source) -> float:
    """``timed`` inside a running stage, with an observer subscribed."""
    run = sw.Pipeline("bench", [lambda _: timed(loop, source)]).start(None, display=False)
    run.subscribe(lambda status: None)
    return run.result()


def variants(devnull: io.TextIOBase) -> dict[str, Callable[[Source], float]]:
    """Name -> measurement of one loop over a fresh source."""
    import tqdm

    def bare(data: Iterable[int]) -> None:
        for _ in data:
            pass

    def tqdm_loop(data: Iterable[int]) -> None:
        for _ in tqdm.tqdm(data, file=devnull):
            pass

    def track_loop(data: Iterable[int]) -> None:
        for _ in sw.track(data):
            pass

    def updated(data: Iterable[int]) -> None:
        with tqdm.tqdm(total=length(data), file=devnull) as bar:
            for _ in data:
                bar.update()

    return {
        "bare loop": lambda src: timed(bare, src),
        "plain tqdm (to os.devnull)": lambda src: timed(tqdm_loop, src),
        "captured tqdm (in a stage)": lambda src: in_stage(tqdm_loop, src),
        "sw.track (in a stage)": lambda src: in_stage(track_loop, src),
        "plain tqdm, update() per item": lambda src: timed(updated, src),
        "captured tqdm, update() per item": lambda src: in_stage(updated, src),
    }


def length(data: Iterable[int]) -> int | None:
    return len(data) if hasattr(data, "__len__") else None  # type: ignore[arg-type]


def measure(n: int, repeats: int, source: Source) -> dict[str, float]:
    """Median ns per item of every variant over ``source``."""
    with open(os.devnull, "w") as devnull:
        table = variants(devnull)
        samples: dict[str, list[float]] = {name: [] for name in table}
        for _ in range(repeats):
            for name, run in random.sample(list(table.items()), len(table)):
                gc.collect()
                samples[name].append(run(source) / n * 1e9)
    return {name: statistics.median(values) for name, values in samples.items()}


def report(title: str, medians: dict[str, float]) -> dict[str, Any]:
    bare = medians["bare loop"]
    print(title)
    print(f"  {'variant':34s} {'ns/item':>9s} {'overhead':>9s} {'vs plain':>8s}")
    plain = {"iter": medians["plain tqdm (to os.devnull)"] - bare,
             "update": medians["plain tqdm, update() per item"] - bare}
    for name, value in medians.items():
        over = value - bare
        base = plain["update"] if "update()" in name else plain["iter"]
        print(f"  {name:34s} {value:9.1f} {over:+9.1f} {over / base:8.2f}")
    ratio = (medians["captured tqdm (in a stage)"] - bare) / plain["iter"]
    ratio_update = (medians["captured tqdm, update() per item"] - bare) / plain["update"]
    print(f"  captured loop overhead = {ratio:.3f} of plain tqdm's (target <= 0.25); "
          f"update() per item: {ratio_update:.3f}")
    return {"ns_per_item": medians, "ratio_to_tqdm": ratio, "update_ratio_to_tqdm": ratio_update}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return per_item_main(argv, __doc__, 1_000_000, measure, report)


if __name__ == "__main__":
    main()
