"""Run every benchmark and write their tables to bench/RESULTS.md.

Run: ``.venv/bin/python -m bench`` (about 5 minutes on 2 cores); ``--only NAME`` runs one.
The machines are shared and noisy: each benchmark interleaves its variants, repeats them
and quotes medians and ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import sys
from pathlib import Path

from .common import machine

SUITE = ["track_overhead", "tqdm_capture", "frontend_traffic", "view_state", "kernel_latency",
         "end_to_end", "ticker_cpu", "scale", "service_load", "service_queue", "claims",
         "dask_progress", "history", "cache"]
RESULTS = Path(__file__).with_name("RESULTS.md")


class _Tee(io.StringIO):
    def write(self, text: str) -> int:
        sys.__stdout__.write(text)
        return super().write(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", choices=SUITE, action="append")
    args = parser.parse_args(argv)
    sections = []
    for name in args.only or SUITE:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ImportError as exc:
            sections.append((name, f"not run: {exc}"))
            continue
        out = _Tee()
        with contextlib.redirect_stdout(out):
            module.main([])
        sections.append((name, out.getvalue().rstrip()))
    if args.only:
        return
    info = machine()
    lines = ["# Benchmark results", "",
             f"Command: `.venv/bin/python -m bench` · {info['date']} · {info['cpu']} "
             f"({info['cpus']} CPUs) · Python {info['python']} · {info['platform']}", "",
             "Shared, noisy machine: figures are medians of interleaved repeats, compared with "
             "tqdm and friends measured in the same run.", ""]
    for name, text in sections:
        lines += [f"## {name}", "", "```", text, "```", ""]
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
