"""tqdm capture in a real kernel (ipykernel 7 and 6): a library's ``tqdm.auto`` bar (the
notebook widget bar there) inside a stage opens no widget and writes nothing in any cell;
the stage's status carries it instead."""

from __future__ import annotations

import time

import kernel as harness
import pytest
from kernel import Kernel

pytestmark = pytest.mark.integration
kernel = harness.kernel  # the fixture, once per ipykernel version

LIBRARY = """
import threading
from tqdm.auto import tqdm  # in a kernel: tqdm.notebook's widget bar
import stagewidget as sw

gate, seen = threading.Event(), threading.Event()

def train(_):
    for epoch in tqdm(range(3), desc="epochs"):
        for step in tqdm(range(20), desc="steps", leave=False):
            if (epoch, step) == (1, 5):
                gate.wait(30)
    return "trained"

def watch(status):
    stage = status.stages[0]
    if stage.inner and stage.inner[0].done == 6:
        seen.set()

pipe = sw.Pipeline("lib", [train])
"""


def test_a_tqdm_auto_bar_in_a_stage_opens_no_widget_and_writes_nothing(kernel: Kernel) -> None:
    kernel.execute(LIBRARY)
    since = time.monotonic()
    kernel.execute("run = pipe.start(None, display=False); run.subscribe(watch)")
    other = kernel.execute("print('other cell')")
    assert other.stdout == "other cell\n" and other.stderr == "" and other.displays == ()
    live = kernel.execute("seen.wait(30); s = run.status().stages[0]; "
                          "print(s.desc, s.done, s.total, [tuple(lv.to_dict().values())[:3] "
                          "for lv in s.inner])")
    assert live.stdout == "epochs 2 3 [('steps', 6, 20)]\n"
    done = kernel.execute("gate.set(); print(run.result(30))")
    assert done.stdout == "trained\n"
    assert kernel.comm_messages(since) == []  # no tqdm widget was ever built
    shown = kernel.messages_since(since, "stream", "display_data", "update_display_data")
    leaked = [m.content for m in shown if m.content.get("text") != live.stdout
              and ("epochs" in str(m.content) or "steps" in str(m.content))]
    assert leaked == []  # no bar text in any cell (our own print of the status aside)
