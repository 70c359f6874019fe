"""The run queue: 2,000 POSTs of a 0.1 s pipeline to one service process at the default cap.

Each POST used to start its own thread at once (2,000 POSTs: 2,000 stage threads and as
many notifier threads). With ``max_running`` (default 32) the runs beyond the cap wait in
``pending`` and start in order as slots free. Printed: whether all completed, the peak
of ``threading.active_count()`` above the idle service (each running run has a driver
thread; one ticker delivers for all: the bound is the cap plus a constant), and how far
the order the stages started in strays from the order of the POSTs.

Run: ``.venv/bin/python -m bench.service_queue [--runs 2000]``
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import httpx

import stagewidget as sw
from stagewidget.service import Service

from .common import write_json

started: list[int] = []  # the inputs in the order their stage began (list.append: atomic)


def build_pipeline(sleep_s: float) -> sw.Pipeline:
    pipe = sw.Pipeline("nap")

    @pipe.stage
    def nap(n: int) -> int:
        started.append(n)
        time.sleep(sleep_s)
        return n

    return pipe


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.service_queue", description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--sleep-s", type=float, default=0.1)
    parser.add_argument("--max-running", type=int, default=None, help="default: the default")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    options = {"max_running": args.max_running} if args.max_running else {}
    started.clear()
    service = Service(build_pipeline(args.sleep_s), port=0, max_finished=args.runs * 2,
                      **options).start()
    cap = service.registry.max_running
    stop, peak = threading.Event(), [0]
    idle_threads = threading.active_count()

    def sample() -> None:
        while not stop.wait(0.002):
            peak[0] = max(peak[0], threading.active_count())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    done, finished = threading.Condition(), [0]

    def one_done() -> None:
        with done:
            finished[0] += 1
            done.notify_all()

    try:
        t0 = time.perf_counter()
        ids, deepest = [], 0
        with httpx.Client(base_url=service.url, timeout=60) as client:
            for n in range(args.runs):
                reply = client.post("/api/pipelines/nap/runs", json=n).json()
                ids.append(reply["run_id"])
                deepest = max(deepest, reply.get("queue_position", 0))
                service.registry.when_recorded_done(reply["run_id"], one_done)
            posted_s = time.perf_counter() - t0
            with done:
                all_done = done.wait_for(lambda: finished[0] == args.runs,
                                         timeout=args.runs * args.sleep_s + 120)
            total_s = time.perf_counter() - t0
            states = [client.get(f"/api/runs/{run_id}").json()["state"] for run_id in ids]
    finally:
        stop.set()
        sampler.join()
        service.stop()
    displacement = [abs(n - i) for i, n in enumerate(started)]
    figures = {
        "runs": args.runs, "max_running": cap, "sleep_s": args.sleep_s,
        "all_completed": all_done and states.count("succeeded") == args.runs,
        "succeeded": states.count("succeeded"), "posted_s": posted_s, "total_s": total_s,
        "ideal_s": args.runs * args.sleep_s / cap, "deepest_queue_position": deepest,
        "idle_threads": idle_threads, "peak_threads": peak[0],
        "peak_extra_threads": peak[0] - idle_threads,
        "started_out_of_order": sum(1 for d in displacement if d),
        "max_displacement": max(displacement, default=0),
    }
    which = " (the default)" if args.max_running is None else ""
    print(f"{args.runs} runs of a {args.sleep_s:g} s stage, max_running {cap}{which}, "
          f"memory store, POSTed one after another over HTTP")
    print(f"  all completed: {figures['all_completed']} ({figures['succeeded']} succeeded) "
          f"in {total_s:.1f} s (ideal {figures['ideal_s']:.1f} s; POSTs took "
          f"{posted_s:.1f} s); deepest queue position {deepest}")
    print(f"  threads: {idle_threads} idle, peak {peak[0]} (+{figures['peak_extra_threads']}; "
          f"bound: {cap} running runs + a constant)")
    print(f"  order: {figures['started_out_of_order']} of {len(started)} stages started out "
          f"of POST order, by at most {figures['max_displacement']} places "
          "(launches from different threads race)")
    write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
