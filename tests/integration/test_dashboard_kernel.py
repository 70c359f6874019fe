"""The Jupyter dashboard and a real kernel (ipykernel 7 via jupyter_client): a run the
kernel starts with ``pipe.start()`` shows up live at ``<base_url>stagewidget/``, and a
Cancel sent there (``DELETE``) stops it inside the kernel."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from conftest import WAIT_S
from kernel import start_kernel
from pytest_jupyter.jupyter_server import *  # noqa: F403 (its fixtures, for this module only)
from traitlets.config import Config

pytestmark = pytest.mark.integration

CELL = """
import itertools, time
import stagewidget as sw

def load():
    return 3

def train(n):
    for epoch in sw.track(itertools.count(), desc="epoch"):  # until cancelled
        sw.report(loss=1 / (epoch + 1))
        time.sleep(0.05)  # pacing: an epoch every 50 ms

run = sw.Pipeline("kernel-train", [load, train]).start()
print(run.run_id)
"""


@pytest.fixture
def jp_base_url() -> str:
    return "/user/alice/"


@pytest.fixture
def jp_server_config() -> Config:
    return Config({"ServerApp": {"jpserver_extensions": {"stagewidget": True}}})


def test_a_kernels_run_is_listed_live_and_a_cancel_stops_it_in_the_kernel(
        home: Path, tmp_path: Path, http_server, jp_http_port, jp_serverapp,
        jp_asyncio_loop) -> None:
    base = f"http://127.0.0.1:{jp_http_port}/user/alice/stagewidget/"
    headers = {"Authorization": f"token {jp_serverapp.identity_provider.token}"}
    (tmp_path / "kernel").mkdir()
    with start_kernel("ipykernel7", tmp_path / "kernel") as kernel:
        run_id = kernel.execute(CELL).stdout.strip()

        async def scenario() -> list[str]:
            seen: list[str] = []
            async with httpx.AsyncClient(headers=headers, timeout=WAIT_S) as http, \
                    http.stream("GET", base + "api/events",
                                params={"pipeline": "kernel-train"}) as stream:
                cancelled = False
                async for line in stream.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    status = json.loads(line[5:])
                    assert status["run_id"] == run_id
                    seen.append(status["state"])
                    if status["state"] == "running" and not cancelled:
                        reply = await http.delete(base + f"api/runs/{run_id}")
                        assert reply.status_code == 202, reply.text
                        cancelled = True
                    elif status["state"] == "cancelled":
                        return seen
            raise AssertionError(seen)

        # the run appears (it is recorded a second after it starts), running, then its
        # end once the kernel took the Cancel
        seen = jp_asyncio_loop.run_until_complete(scenario())
        assert seen[-1] == "cancelled" and "running" in seen
        ended = kernel.execute("print(run.wait(20).state.value, run.status().stages[1].state.value)")
        assert ended.stdout.split() == ["cancelled", "cancelled"]
