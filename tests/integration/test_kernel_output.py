"""Output capture in a real kernel (ipykernel 7 and 6): a stage's ``print()`` lands in
its run's log (and the widget's log panel), in no cell's output, whichever cell runs
while it prints, and the cells' own prints are untouched."""

from __future__ import annotations

import ast
import time

import kernel as harness
import pytest
from kernel import Kernel

pytestmark = pytest.mark.integration
kernel = harness.kernel  # the fixture, once per ipykernel version

STAGE = """
import sys, threading, warnings
import stagewidget as sw

gates = [threading.Event(), threading.Event()]
printed = [threading.Event() for _ in range(3)]

def chatty(_):
    print("stage line 0")
    printed[0].set()
    gates[0].wait(30)
    print("stage line 1")
    print("stage line 2", file=sys.stderr)
    printed[1].set()
    gates[1].wait(30)
    for i in (3, 4, 5):
        sys.stdout.write(f"\\rstage line {i}")
    print()
    warnings.warn("stage warning")
    printed[2].set()
    return "chatted"

pipe = sw.Pipeline("chatty", [chatty])
"""


def test_a_stages_prints_land_in_its_log_and_in_no_cell(kernel: Kernel) -> None:
    kernel.execute(STAGE)
    since = time.monotonic()
    first = kernel.execute("run = pipe.start(None); printed[0].wait(30)")
    # the next lines are printed while other cells run (ipykernel 7 would show them there)
    second = kernel.execute("gates[0].set(); printed[1].wait(30); print('cell two')")
    third = kernel.execute("gates[1].set(); printed[2].wait(30); print(run.result(30))")
    later = kernel.execute("print('a later cell')")
    logs = kernel.execute("print(list(run.wait(30).logs))")
    assert first.stdout == first.stderr == ""
    assert (second.stdout, second.stderr) == ("cell two\n", "")
    assert (third.stdout, third.stderr) == ("chatted\n", "")
    assert (later.stdout, later.stderr) == ("a later cell\n", "")
    lines = ast.literal_eval(logs.stdout)  # our own cell's repr of a list of str
    assert lines[:4] == ["stage line 0", "stage line 1", "stage line 2", "stage line 5"]
    assert any(line.endswith("UserWarning: stage warning") for line in lines)
    streams = kernel.messages_since(since, "stream")
    leaked = [m.content for m in streams if m.content["text"] != logs.stdout
              and "stage" in m.content["text"]]
    assert leaked == []  # no stage line in any cell (our own print of the logs aside)
    panel = [m for m in kernel.comm_messages(since) if "stage line 5" in str(m.content)]
    assert panel  # the widget's log panel shows them
