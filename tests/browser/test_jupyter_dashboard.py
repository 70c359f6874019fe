"""The dashboard inside a real ``jupyter server`` (base URL ``/user/alice/``, as on
JupyterHub) in Debian's headless Chromium: opened with Jupyter's own token login, it
shows a run that another process records as live, its Cancel button stops the run in
that process, its Retry shows why it is refused here, and the browser console stays
free of errors. Screenshots go to
test-artifacts/dashboard/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab import CHROMIUM, CHROMIUM_ARGS, ROOT, JupyterServer, require_chromium

pytestmark = pytest.mark.integration

WAIT_S = 20.0
SHOTS = ROOT / "test-artifacts" / "dashboard"
BASE_URL = "/user/alice/"

KERNEL_LIKE = textwrap.dedent("""
    import itertools, threading, time
    import stagewidget as sw
    from stagewidget.durable import history

    def load():
        return 3

    def train(n):
        for epoch in sw.track(itertools.count(), desc="epoch"):  # until cancelled
            sw.report(loss=1 / (epoch + 1))
            time.sleep(0.05)  # pacing: an epoch every 50 ms

    training = threading.Event()
    run = sw.Pipeline("notebook-train", [load, train]).start(display=False)
    run.subscribe(lambda s: s.current == 1 and training.set())
    assert training.wait(20) and history.flush(20)
    print(run.run_id, flush=True)
    print(run.wait(60).state.value, flush=True)
""")


class DashboardServer(JupyterServer):
    """``jupyter server`` under ``/user/alice/`` with the stagewidget extension on."""

    app = "Jupyter Server"
    ready_path = f"{BASE_URL}api/status"

    def command(self, base: Path) -> list[str]:
        return [*self.server_args("server"), f"--ServerApp.base_url={BASE_URL}",
                "--ServerApp.jpserver_extensions=stagewidget=True"]

    def _stop(self) -> None:
        self._api(f"{BASE_URL}api/shutdown", method="POST")


@pytest.fixture(scope="module")
def server() -> Iterator[DashboardServer]:
    require_chromium()
    with tempfile.TemporaryDirectory(prefix="stagewidget-jupyter-") as base:
        running = DashboardServer(Path(base))
        yield running
        running.close()


@pytest.fixture
def kernel_like() -> Iterator[subprocess.Popen[str]]:
    """A process recording a held run in the same history as the server reads."""
    proc = subprocess.Popen([sys.executable, "-c", KERNEL_LIKE], env=dict(os.environ),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    yield proc
    proc.kill()
    proc.communicate()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    # module scope: Playwright's sync API keeps an event loop running in this thread
    from playwright.sync_api import sync_playwright

    require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_the_dashboard_in_jupyter_shows_a_live_run_and_cancels_it(
        server: DashboardServer, kernel_like: subprocess.Popen[str], chromium: Any) -> None:
    run_id = kernel_like.stdout.readline().strip()
    assert run_id, kernel_like.stderr.read()
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    context.on("console", lambda message: message.type == "error"
               and errors.append(message.text))
    context.on("weberror", lambda error: errors.append(f"page error: {error.error}"))
    try:
        tab = context.new_page()
        tab.set_default_timeout(WAIT_S * 1000)
        tab.goto(f"{server.url}{BASE_URL}stagewidget/?token={server.token}")  # Jupyter's login
        row = f'#runs [data-run-id="{run_id}"]'
        tab.wait_for_selector(f'{row}[data-state="running"][data-pipeline="notebook-train"]')
        tab.wait_for_selector("#conn[data-state=live]")
        assert tab.is_hidden("#login")  # Jupyter logged the user in: no token form
        # live: the running stage's ETA/rate text and bar come from the stream
        tab.wait_for_selector(f'{row} .bar[data-stage="0"] .bar-fill[style*="100%"]')
        SHOTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SHOTS / "jupyter-live-run.png"), full_page=True)
        tab.click(f'{row} button[data-action="cancel"]')
        tab.wait_for_selector(f'{row}[data-state="cancelled"]')
        out, err = kernel_like.communicate(timeout=WAIT_S)
        assert out.strip() == "cancelled", err  # the owning process cancelled it
        # Retry belongs to the kernel that ran it: the page shows the 409's detail
        tab.click(f'{row} button[data-action="retry"]')
        tab.wait_for_selector(f'{row} .problem:has-text("can be retried only in that kernel")')
        tab.screenshot(path=str(SHOTS / "jupyter-cancelled-run.png"), full_page=True)
        # Chromium logs the refused request itself; nothing else went wrong
        assert [e for e in errors if "status of 409" not in e] == []
        assert len(errors) <= 1
    finally:
        context.close()
