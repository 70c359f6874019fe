"""Frontend traffic from a real ipykernel while a 4-stage pipeline iterates as fast as it
can, beside tqdm.notebook and a naive ipywidgets loop measured in the same kernel.

Counts the comm messages (and their bytes) the kernel sends on IOPub per second.
Run: ``.venv/bin/python -m bench.frontend_traffic [--seconds 8]``
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import write_json
from .kernel import BenchKernel

SETUP = """
import time, ipywidgets, stagewidget as sw
from IPython.display import display
def spin(seconds, desc):
    end = time.perf_counter() + seconds
    n = 0
    for _ in sw.track(iter(int, 1), desc=desc):   # as fast as it can, unknown total
        n += 1
        if n % 4096 == 0 and time.perf_counter() > end:
            break
    return n
"""

STAGEWIDGET = """
stages = [sw.Stage(lambda _, i=i: spin({per_stage}, f"s{{i}}"), name=f"stage{{i}}")
          for i in range(4)]
pipe = sw.Pipeline("traffic", stages)
run = pipe.start(None)
run.wait()
"""

STAGEWIDGET_SIZED = """
def calibrate():
    start = time.perf_counter()
    for _ in sw.track(range(20_000_000)):  # outside a run: a plain loop
        pass
    return 20_000_000 / (time.perf_counter() - start)
per_s = calibrate()
def sized(_):   # a known total, sized to take about {seconds} s: the bar moves all the way
    for _ in sw.track(range(int(per_s * {seconds})), desc="items"):
        pass
pipe = sw.Pipeline("traffic-sized", [sized])
run = pipe.start(None)
run.wait()
"""

TQDM = """
import tqdm.notebook
end = time.perf_counter() + {seconds}
for i in tqdm.notebook.tqdm(iter(int, 1)):
    if i % 4096 == 0 and time.perf_counter() > end:
        break
"""

NAIVE = """
bar = ipywidgets.IntProgress(max=10**9)
display(bar)
start = time.perf_counter()
for i in range(20_000):
    bar.value = i
naive_s = time.perf_counter() - start
start = time.perf_counter()
for i in range(20_000):
    pass
bare_s = time.perf_counter() - start
print(naive_s / bare_s)
"""


def measure(kernel: BenchKernel, code: str) -> dict[str, float]:
    """Run ``code``; return comm messages and bytes per second over the whole run and in
    its steady state (without its first and last second, where the start and the end
    redraw every widget once)."""
    start = len(kernel.messages)
    kernel.execute(code)
    kernel.execute("pass")  # drains what the run sent while finishing
    window = [m for m in kernel.messages[start:] if m.msg_type == "comm_msg"]
    if len(window) < 2:
        return {"messages": len(window), "msgs_per_s": 0.0, "kb_per_s": 0.0, "seconds": 0.0,
                "steady_msgs_per_s": 0.0, "steady_kb_per_s": 0.0}
    first, last = window[0].t, window[-1].t
    seconds = last - first
    steady = [m for m in window if first + 1 < m.t < last - 1]
    steady_s = max(seconds - 2, 1e-9)
    return {"messages": len(window), "seconds": round(seconds, 2),
            "msgs_per_s": round(len(window) / seconds, 1),
            "kb_per_s": round(sum(m.size for m in window) / seconds / 1000, 2),
            "bytes_per_msg": round(sum(m.size for m in window) / len(window)),
            "steady_msgs_per_s": round(len(steady) / steady_s, 1),
            "steady_kb_per_s": round(sum(m.size for m in steady) / steady_s / 1000, 2)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    kernel = BenchKernel()
    try:
        kernel.execute(SETUP)
        results = {
            "stagewidget (4 stages, unknown totals)": measure(
                kernel, STAGEWIDGET.format(per_stage=args.seconds / 4)),
            "stagewidget (1 stage, known total)": measure(
            kernel, STAGEWIDGET_SIZED.format(seconds=args.seconds)),
            "tqdm.notebook": measure(kernel, TQDM.format(seconds=args.seconds)),
        }
        start = len(kernel.messages)
        kernel.execute(NAIVE)
        kernel.execute("pass")
        naive = [m for m in kernel.messages[start:] if m.msg_type == "comm_msg"]
        slow = [m for m in kernel.messages[start:] if m.msg_type == "stream"]
        span = (naive[-1].t - naive[0].t) or 1e-9
        results["naive ipywidgets loop"] = {
            "messages": len(naive), "seconds": round(span, 2),
            "msgs_per_s": round(len(naive) / span, 1),
            "kb_per_s": round(sum(m.size for m in naive) / span / 1000, 1),
            "steady_msgs_per_s": round(len(naive) / span, 1),
            "steady_kb_per_s": round(sum(m.size for m in naive) / span / 1000, 1),
            "slowdown_x": round(float(slow[-1].content["text"]), 0) if slow else None,
        }
    finally:
        kernel.close()
    print("frontend traffic per run (comm_msg on IOPub, from a real ipykernel)")
    print(f"  {'variant':38s} {'whole run':>18s} {'steady state':>18s} {'msgs':>6s}")
    print(f"  {'':38s} {'msgs/s':>9s} {'KB/s':>8s} {'msgs/s':>9s} {'KB/s':>8s}")
    for name, row in results.items():
        print(f"  {name:38s} {row['msgs_per_s']:9.1f} {row['kb_per_s']:8.2f} "
              f"{row['steady_msgs_per_s']:9.1f} {row['steady_kb_per_s']:8.2f} {row['messages']:6d}"
              + (f"  loop slowed {row['slowdown_x']:.0f}x" if row.get("slowdown_x") else ""))
    print("  targets: stagewidget <= refresh_hz (10) refreshes/s and <= 10 KB/s per run")
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
