"""What the run history costs: ``sw.track`` with history on and off (vs tqdm), recording
1,000 runs (time per run, database size), and reading ``sw.history()`` and the expected
durations over 10,000 recorded runs.

Everything goes to a temporary data folder (``STAGEWIDGET_HOME``), removed at the end.
Track variants are interleaved (each repeat runs every variant once, in a shuffled
order) and medians compared, as in ``bench.track_overhead``.
Run: ``.venv/bin/python -m bench.history [--n 1000000] [--repeats 5] [--runs 1000]
[--records 10000]``
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import stagewidget as sw
from stagewidget.durable import eta, history
from stagewidget.durable.db import transaction
from stagewidget.durable.records import open_db, write_run

from .common import write_json


def _timed_loop(n: int) -> float:
    start = time.perf_counter()
    for _ in sw.track(range(n)):
        pass
    return time.perf_counter() - start


def track_overhead(n: int, repeats: int) -> dict[str, Any]:
    """ns per item: bare loop, tqdm, and sw.track in a running stage, history on and off."""
    import tqdm

    devnull = open(os.devnull, "w")  # noqa: SIM115  (kept open for the whole run)

    def bare() -> float:
        start = time.perf_counter()
        for _ in range(n):
            pass
        return time.perf_counter() - start

    def with_tqdm() -> float:
        start = time.perf_counter()
        for _ in tqdm.tqdm(range(n), file=devnull, disable=False):
            pass
        return time.perf_counter() - start

    def in_stage(recorded: bool) -> Callable[[], float]:
        pipe = sw.Pipeline("bench-track", [lambda _: _timed_loop(n)], history=recorded)

        def measure() -> float:
            run = pipe.start(None, display=False)
            run.subscribe(lambda status: None)  # a view, as in bench.track_overhead
            return float(run.result())

        return measure

    table = {"bare loop": bare, "tqdm": with_tqdm, "sw.track, history on": in_stage(True),
             "sw.track, history off": in_stage(False)}
    samples: dict[str, list[float]] = {name: [] for name in table}
    for _ in range(repeats):
        for name, measure in random.sample(list(table.items()), len(table)):
            gc.collect()
            samples[name].append(measure() / n * 1e9)
    devnull.close()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base, tqdm_over = medians["bare loop"], medians["tqdm"] - medians["bare loop"]
    print(f"sw.track over range({n:,}), median of {repeats} (ns/item; overhead vs tqdm's):")
    ratios = {}
    for name, value in medians.items():
        ratios[name] = (value - base) / tqdm_over
        print(f"  {name:24s} {value:8.1f} ns  {value - base:+8.1f}  {ratios[name]:6.3f}")
    return {"ns_per_item": medians, "ratio_to_tqdm": ratios}


def record_runs(runs: int, home: Path) -> dict[str, Any]:
    """Seconds per run of a 3-stage pipeline with history on and off; the database size."""

    def one(x: int) -> int:
        return x + 1

    def two(x: int) -> int:
        sw.report(x=x)
        return x * 2

    def three(x: int) -> int:
        return x - 1

    per_run = {}
    for recorded in (False, True, False, True):  # interleaved, the last of each kept
        pipe = sw.Pipeline(f"bench-record-{recorded}", [one, two, three], history=recorded)
        start = time.perf_counter()
        for i in range(runs):
            pipe.start(i, display=False).result()
        history.flush(60)
        per_run[recorded] = (time.perf_counter() - start) / runs
    size = _size(home)
    print(f"{runs:,} runs of a 3-stage pipeline: {per_run[False] * 1e3:.2f} ms/run history "
          f"off, {per_run[True] * 1e3:.2f} ms/run on (+{(per_run[True] - per_run[False]) * 1e3:.2f}"
          f" ms); {runs:,} recorded: {size}")
    return {"s_per_run_off": per_run[False], "s_per_run_on": per_run[True], "size": size}


def _size(home: Path) -> str:
    """The database file's size, and its WAL's (reused, at most about 4 MB)."""
    path = home / history.DB_NAME
    wal = path.with_name(path.name + "-wal")
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    return f"database {path.stat().st_size / 1e6:.2f} MB + WAL {wal_bytes / 1e6:.2f} MB"


def read_records(records: int, repeats: int, home: Path) -> dict[str, Any]:
    """Fill the history to ``records`` runs; time sw.history() and the ETA lookup."""
    path = home / history.DB_NAME
    conn = open_db(path)
    names = ("load", "fit", "score")
    fingerprints = ("a" * 32, "b" * 32, "c" * 32)
    existing = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    with transaction(conn):
        for i in range(existing, records):
            stages = tuple(sw.StageStatus(name, sw.StageState.SUCCEEDED, started_at=i,
                                          finished_at=i + 1.0, elapsed_s=1.0 + (i % 7) / 10,
                                          metrics={"loss": 1 / (i + 1)})
                           for name in names)
            status = sw.RunStatus(str(uuid.uuid4()), f"bench-{i % 5}", sw.RunState.SUCCEEDED,
                                  stages, current=2, created_at=float(i), started_at=float(i),
                                  finished_at=i + 3.0, elapsed_s=3.0)
            write_run(conn, status, fingerprints)
    conn.close()

    def timed(fn: Callable[[], object]) -> float:
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    figures = {
        "history() limit 50": timed(lambda: sw.history()),
        "history('bench-3') limit 50": timed(lambda: sw.history("bench-3")),
        f"history(limit={records:,})": timed(lambda: sw.history(limit=records)),
        "expected durations (3 stages)": timed(
            lambda: eta._read(path, "bench-3", names, fingerprints)),
        "  the same, memoised (a run start)": timed(
            lambda: eta.expected_durations(path, "bench-3", names, fingerprints)),
    }
    size = _size(home)
    print(f"over {records:,} recorded runs ({size}), median of {repeats}:")
    for name, seconds in figures.items():
        print(f"  {name:32s} {seconds * 1e3:8.2f} ms")
    return {"seconds": figures, "size": size}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="stagewidget-bench-history-"))
    os.environ["STAGEWIDGET_HOME"] = str(home)
    try:
        result = {"track": track_overhead(args.n, args.repeats),
                  "record": record_runs(args.runs, home),
                  "read": read_records(args.records, args.repeats, home)}
    finally:
        history.flush(60)
        shutil.rmtree(home, ignore_errors=True)
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
