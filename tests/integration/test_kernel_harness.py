"""The kernel harness on ipykernel 7 and 6, and what each version does with messages sent
from background threads: which request's ``msg_id`` they carry as parent, which decides the
cell a frontend shows them in (ipykernel PRs 1451 and 1546, ipywidgets issue 4001).

Observed on ipykernel 7.4.0 and 6.31.0 (ipywidgets 8.1.9, comm 0.2.3):
- comm messages from a plain thread carry the latest shell request on both versions: the
  running cell, or when idle the last request of any type (even a ``kernel_info_request``).
- ``print`` from a plain thread goes to the cell that started the thread on ipykernel 6 (it
  hooks ``threading.Thread``), but to the latest shell request on ipykernel 7.
- On ipykernel 7 a thread that runs in a copy of the starting cell's context
  (``contextvars.copy_context().run``) sends everything with that cell as parent; ipykernel 6
  ignores the context for comm messages.

Threads in the kernel wait on an ``Event`` set by the next cell, or on a FIFO that the test
writes once the kernel is idle, so each message is sent at a known moment.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import kernel as harness
import pytest
from kernel import IOPubMessage, Kernel

pytestmark = pytest.mark.integration
kernel = harness.kernel  # the fixture, once per ipykernel version

only_ipykernel6 = pytest.mark.parametrize("kernel", ["ipykernel6"], indirect=True)
only_ipykernel7 = pytest.mark.parametrize("kernel", ["ipykernel7"], indirect=True)

UPDATES = 200

# A thread started by this cell waits for ``go``, then prints, updates ``bar`` and sets
# ``done``; run the cell in a copied context with RUN = "contextvars.copy_context().run".
START_WAITING_THREAD = """
import contextvars, threading
import ipywidgets
bar = ipywidgets.IntProgress(max=10)
display(bar)
go, done = threading.Event(), threading.Event()
def worker():
    go.wait(20)
    print("from the thread", flush=True)
    bar.value = 1
    done.set()
threading.Thread(target={run}, daemon=True).start()
"""
PLAIN = START_WAITING_THREAD.format(run="worker")
IN_COPIED_CONTEXT = START_WAITING_THREAD.format(
    run="contextvars.copy_context().run, args=(worker,)")
RELEASE_AND_WAIT = "go.set()\nassert done.wait(20)"

# The same, but the thread waits for the test to write a FIFO (the kernel being idle).
START_FIFO_THREAD = """
import threading
import ipywidgets
bar = ipywidgets.IntProgress(max=10)
display(bar)
def worker():
    open({fifo!r}).read()
    print("from the thread", flush=True)
    bar.value = 1
threading.Thread(target=worker, daemon=True).start()
"""


def thread_output(kernel: Kernel, since: int = 0) -> tuple[IOPubMessage, IOPubMessage]:
    """Wait for the thread's stream message and its comm_msg; return both."""

    def both(msgs: Sequence[IOPubMessage]) -> tuple[IOPubMessage, IOPubMessage] | None:
        stream = [m for m in msgs[since:] if m.msg_type == "stream"
                  and "from the thread" in m.content["text"]]
        comm = [m for m in msgs[since:] if m.msg_type == "comm_msg"
                and m.content["data"].get("state") == {"value": 1}]
        return (stream[0], comm[0]) if stream and comm else None

    return kernel.wait_for(both)


def released_during_next_cell(kernel: Kernel, start: str
                              ) -> tuple[str, str, IOPubMessage, IOPubMessage]:
    """Start the thread in one cell, release it from the next; return both ids and output."""
    started = kernel.execute(start)
    running = kernel.execute(RELEASE_AND_WAIT)
    stream, comm = thread_output(kernel)
    return started.msg_id, running.msg_id, stream, comm


def released_while_idle(kernel: Kernel, fifo: Path) -> tuple[str, str, IOPubMessage, IOPubMessage]:
    """Start the thread in one cell, run another, release it when idle; return ids and output."""
    os.mkfifo(fifo)
    started = kernel.execute(START_FIFO_THREAD.format(fifo=str(fifo)))
    later = kernel.execute("later = True")
    since = len(kernel.messages)
    fifo.write_text("go")
    stream, comm = thread_output(kernel, since)
    return started.msg_id, later.msg_id, stream, comm


def test_execute_returns_stdout(kernel: Kernel) -> None:
    result = kernel.execute("print(6*7)")
    assert result.ok and result.stdout == "42\n" and result.stderr == ""
    assert [m.msg_type for m in result.messages][-1] == "status"


def test_execute_returns_the_error(kernel: Kernel) -> None:
    result = kernel.execute("1/0", allow_errors=True)
    [error] = result.errors
    assert not result.ok and error["ename"] == "ZeroDivisionError" and error["traceback"]


def test_execute_raises_on_error_by_default(kernel: Kernel) -> None:
    with pytest.raises(AssertionError, match="ZeroDivisionError"):
        kernel.execute("1/0")


def test_kernel_reports_its_ipykernel_version(kernel: Kernel) -> None:
    assert kernel.ipykernel_version.split(".")[0] == kernel.name.removeprefix("ipykernel")


def test_recorder_sees_every_update_of_a_widget_changed_from_a_thread(
        kernel: Kernel, record_property) -> None:
    result = kernel.execute(f"""
import threading
import ipywidgets
bar = ipywidgets.IntProgress(max={UPDATES})
display(bar)
def spin():
    for i in range(1, {UPDATES} + 1):
        bar.value = i
threading.Thread(target=spin, daemon=True).start()
""")
    [model_id] = result.widget_model_ids
    assert "IntProgress" in result.displays[0]["text/plain"]
    opened = [m for m in result.messages if m.msg_type == "comm_open"]
    assert model_id in {m.content["comm_id"] for m in opened}

    def all_updates(msgs: Sequence[IOPubMessage]) -> list[IOPubMessage] | None:
        updates = [m for m in msgs if m.msg_type == "comm_msg"
                   and m.content["comm_id"] == model_id]
        return updates if len(updates) == UPDATES else None

    updates = kernel.wait_for(all_updates)
    assert [m.content["data"]["state"]["value"] for m in updates] == list(range(1, UPDATES + 1))
    assert {m.parent_msg_id for m in updates} == {result.msg_id}
    window_s = updates[-1].received_s - updates[0].received_s
    total_bytes = sum(m.size_bytes for m in updates)
    report = {"comm_open": len(opened), "comm_msg": len(updates), "bytes": total_bytes,
              "bytes_per_msg": total_bytes // len(updates), "window_s": round(window_s, 4),
              "msgs_per_s": round(len(updates) / window_s),
              "bytes_per_s": round(total_bytes / window_s)}
    record_property("traffic", report)
    print(f"\n{kernel.name} ({kernel.ipykernel_version}) traffic: {report}")


@only_ipykernel6
def test_thread_print_during_the_next_cell_goes_to_the_starting_cell_on_ipykernel6(
        kernel: Kernel) -> None:
    started, running, stream, _ = released_during_next_cell(kernel, PLAIN)
    assert stream.parent_msg_id == started != running


@only_ipykernel7
def test_thread_print_during_the_next_cell_goes_to_the_running_cell_on_ipykernel7(
        kernel: Kernel) -> None:
    started, running, stream, _ = released_during_next_cell(kernel, PLAIN)
    assert stream.parent_msg_id == running != started


def test_thread_comm_msg_during_the_next_cell_carries_the_running_cell(kernel: Kernel) -> None:
    started, running, _, comm = released_during_next_cell(kernel, PLAIN)
    assert comm.parent_msg_id == running != started


@only_ipykernel6
def test_thread_print_while_idle_goes_to_the_starting_cell_on_ipykernel6(
        kernel: Kernel, tmp_path: Path) -> None:
    started, later, stream, _ = released_while_idle(kernel, tmp_path / "go")
    assert stream.parent_msg_id == started != later


@only_ipykernel7
def test_thread_print_while_idle_goes_to_the_last_cell_on_ipykernel7(
        kernel: Kernel, tmp_path: Path) -> None:
    started, later, stream, _ = released_while_idle(kernel, tmp_path / "go")
    assert stream.parent_msg_id == later != started


def test_thread_comm_msg_while_idle_carries_the_last_cell(kernel: Kernel, tmp_path: Path
                                                          ) -> None:
    started, later, _, comm = released_while_idle(kernel, tmp_path / "go")
    assert comm.parent_msg_id == later != started


def test_thread_comm_msg_while_idle_carries_a_later_kernel_info_request(
        kernel: Kernel, tmp_path: Path) -> None:
    # Frontends send kernel_info, comm_info and comm_msg requests on their own: any of them
    # becomes the parent of what threads send next, so such updates belong to no cell.
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    kernel.execute(START_FIFO_THREAD.format(fifo=str(fifo)))
    info = kernel.kernel_info()
    since = len(kernel.messages)
    fifo.write_text("go")
    _, comm = thread_output(kernel, since)
    assert comm.parent_msg_id == info["parent_header"]["msg_id"]
    assert comm.msg["parent_header"]["msg_type"] == "kernel_info_request"


@only_ipykernel7
def test_copied_context_thread_output_goes_to_the_starting_cell_on_ipykernel7(
        kernel: Kernel) -> None:
    started, running, stream, comm = released_during_next_cell(kernel, IN_COPIED_CONTEXT)
    assert stream.parent_msg_id == comm.parent_msg_id == started != running


@only_ipykernel6
def test_copied_context_thread_comm_msg_carries_the_running_cell_on_ipykernel6(
        kernel: Kernel) -> None:
    started, running, stream, comm = released_during_next_cell(kernel, IN_COPIED_CONTEXT)
    assert comm.parent_msg_id == running != started
    assert stream.parent_msg_id == started
