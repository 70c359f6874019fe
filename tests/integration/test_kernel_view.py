"""The widget view in a real kernel, on ipykernel 7 and 6: shown at once, live, coalesced,
cancellable, its final status saved beside it, nothing leaking into other cells."""

from __future__ import annotations

import kernel as harness
import pytest
from kernel import WIDGET_MIME, Kernel

pytestmark = pytest.mark.integration
kernel = harness.kernel  # the fixture, once per ipykernel version

GATED = """
import logging, threading
import stagewidget as sw
gate = threading.Event()
pipe = sw.Pipeline("gated")

@pipe.stage
def load(n):
    return list(range(n))

@pipe.stage
def hold(items):
    logging.getLogger("user").warning("holding %d items", len(items))
    for _ in sw.track(iter(lambda: gate.wait(0.01), True), desc="waiting"):  # until it opens
        pass
    return sum(items)
"""


def final_update(kernel: Kernel, text: str) -> str:
    """Wait for the view's display update whose text/plain starts with ``text``."""
    def found(messages):
        for m in messages:
            if m.msg_type == "update_display_data":
                plain = m.content["data"].get("text/plain", "")
                if plain.startswith(text):
                    return plain
        return None

    return kernel.wait_for(found, timeout=30)


def test_start_shows_a_live_view_and_the_cell_returns_while_it_runs(kernel: Kernel) -> None:
    kernel.execute(GATED)
    started = kernel.execute("run = pipe.start(1000)")
    [bundle] = started.displays
    assert WIDGET_MIME in bundle and bundle["text/plain"].startswith("gated")
    assert kernel.execute("print(run.status().state.value)").stdout == "running\n"
    kernel.execute("gate.set(); status = run.wait()")
    plain = final_update(kernel, "gated succeeded in")
    assert "load" in plain and "hold" in plain


def test_stage_logging_stays_in_the_run_not_in_other_cells(kernel: Kernel) -> None:
    kernel.execute(GATED)
    kernel.execute("run = pipe.start(10)")
    other = kernel.execute("print('other cell')")
    kernel.execute("gate.set(); run.wait()")
    later = kernel.execute("print(run.status().logs[-1].split(': ', 1)[1])")
    assert later.stdout == "holding 10 items\n"
    assert other.stdout == "other cell\n" and other.stderr == ""
    streams = [m for m in kernel.messages if m.msg_type == "stream"
               and "holding" in m.content["text"]]
    assert streams == [m for m in streams if m.parent_msg_id == later.msg_id]


def test_progress_updates_are_coalesced_however_fast_the_stage_iterates(kernel: Kernel) -> None:
    kernel.execute("""
import time, stagewidget as sw
def spin(seconds):
    end = time.perf_counter() + seconds
    for i in sw.track(range(10**12), desc="spin"):
        if i % 4096 == 0 and time.perf_counter() > end:
            return i
pipe = sw.Pipeline("fast", [spin])
""")
    result = kernel.execute("run = pipe.start(3.0); run.wait(); print(run.result() > 10**6)")
    assert result.stdout.endswith("True\n")
    updates = [m for m in kernel.messages if m.msg_type == "comm_msg"
               and m.parent_msg_id == result.msg_id]
    # about 3 s at refresh_hz 10 for the bars and 1 Hz for text: tens, not millions,
    # plus one redraw of every widget at the start and at the end
    assert 5 < len(updates) < 3 * (10 + 4) + 80


def test_cancel_button_click_cancels_the_run(kernel: Kernel) -> None:
    kernel.execute(GATED)
    started = kernel.execute("run = pipe.start(5)")
    [model_id] = started.widget_model_ids

    def cancel_button(messages):
        for m in messages:
            state = m.content.get("data", {}).get("state", {}) if m.msg_type == "comm_open" else {}
            if state.get("_model_name") == "ButtonModel" and state.get("description") == "Cancel":
                return m.content["comm_id"]
        return None

    button = kernel.wait_for(cancel_button)
    assert model_id  # the view's root box
    kernel.send_comm_msg(button, {"method": "custom", "content": {"event": "click"}})
    done = kernel.execute("status = run.wait(10); print(status.state.value)")
    assert done.stdout == "cancelled\n"


def test_displaying_a_run_again_shows_another_live_view(kernel: Kernel) -> None:
    kernel.execute(GATED)
    first = kernel.execute("run = pipe.start(3)")
    again = kernel.execute("run")
    assert again.widget_model_ids and again.widget_model_ids != first.widget_model_ids
    kernel.execute("gate.set(); run.wait()")


def test_many_runs_leave_no_threads_behind(kernel: Kernel) -> None:
    result = kernel.execute("""
import threading, stagewidget as sw
before = threading.active_count()
pipe = sw.Pipeline("many", [sw.Stage(lambda n: sum(sw.track(range(n))), name="sum")])
runs = [pipe.start(1000) for _ in range(30)]
assert all(r.wait(30).state.value == "succeeded" for r in runs)
for t in threading.enumerate():
    if t.name.startswith("stagewidget-"):
        t.join(10)
print(threading.active_count() - before)
""", timeout=120)
    assert result.stdout == "0\n"
