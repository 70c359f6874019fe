"""Cancel during a blocking ``pipe.run()``: a click sent on a kernel subshell (as
JupyterLab 4.6 sends widget messages) is handled while the main shell is busy."""

from __future__ import annotations

import queue
import time

import pytest
from jupyter_client import KernelManager

pytestmark = pytest.mark.integration

BLOCKING = """
import stagewidget as sw
def spin(_):
    for _ in sw.track(iter(int, 1)):
        pass
try:
    sw.Pipeline("blocking", [spin]).run(None)
except BaseException as exc:
    print("pipe.run ended:", type(exc).__name__)
"""


@pytest.fixture
def client():
    manager = KernelManager(kernel_name="python3", ip="127.0.0.1")  # this interpreter
    manager.start_kernel()
    kc = manager.client()
    kc.start_channels()
    kc.wait_for_ready(60)
    features = kc.kernel_info(reply=True, timeout=30)["content"].get("supported_features", [])
    if "kernel subshells" not in features:
        pytest.skip("this ipykernel has no subshells")
    yield kc
    kc.stop_channels()
    manager.shutdown_kernel(now=True)


def iopub_until(kc, predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            break
        found = predicate(msg)
        if found:
            return found
    raise AssertionError("no such IOPub message in time")


def test_cancel_click_on_a_subshell_stops_a_blocking_run(client) -> None:
    client.execute(BLOCKING)

    def cancel_button(msg):
        if msg["msg_type"] == "comm_open":
            state = msg["content"]["data"]["state"]
            if state.get("_model_name") == "ButtonModel" and state.get("description") == "Cancel":
                return msg["content"]["comm_id"]
        return None

    button = iopub_until(client, cancel_button)
    client.control_channel.send(client.session.msg("create_subshell_request", {}))
    subshell = client.control_channel.get_msg(timeout=30)["content"]["subshell_id"]
    click = client.session.msg("comm_msg", {"comm_id": button, "data": {
        "method": "custom", "content": {"event": "click"}}})
    click["header"]["subshell_id"] = subshell
    sent = time.monotonic()
    client.shell_channel.send(click)
    text = iopub_until(client, lambda m: m["msg_type"] == "stream" and m["content"]["text"])
    assert text.strip() == "pipe.run ended: Cancelled"
    assert time.monotonic() - sent < 10
