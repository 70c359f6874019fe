"""JupyterLab 4 on 127.0.0.1 driven by Debian's headless Chromium through Playwright.

Facts this relies on (checked on this machine, see ../shared/notes/jupyter-testing.md):
as root, lab needs ``--allow-root``; ``launch()`` rejects ``--user-data-dir`` so Chromium
starts with ``launch_persistent_context`` on a fresh folder; the news pop-up and the kernel
picker are turned off by user settings; ``notebook:run-all-cells`` resolves only when every
cell has run, so it is fired without awaiting; the kernel status indicator is no sign that a
cell finished (control-channel replies flip it): tests wait on output text or widget DOM.
Tests work on copies of notebooks because JupyterLab autosaves.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
READY_JS = """() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  if (!panel || !panel.context || !panel.sessionContext) return false;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return panel.context.isReady && panel.sessionContext.isReady && !!kernel
    && kernel.status === 'idle';
}"""


class JupyterServer:
    """A Jupyter server process of its own (its own config, data, runtime and settings
    folders under ``base``), on 127.0.0.1 with a token; subclasses give the command line.

    Ready once ``ready_path`` answers; ``close()`` ends it (and its kernels) by its PID.
    """

    app = "Jupyter server"
    ready_path = "/api/status"

    def __init__(self, base: Path) -> None:
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.root_dir = base / "root"
        self.log_path = base / "server.log"
        self.settings_dir = base / "settings"
        for folder in (self.root_dir, self.settings_dir, base / "config", base / "data",
                       base / "runtime", base / "workspaces"):
            folder.mkdir(parents=True, exist_ok=True)
        _write_settings(self.settings_dir)
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(base / "config"),
                   JUPYTER_RUNTIME_DIR=str(base / "runtime"),
                   JUPYTER_DATA_DIR=str(base / "data"), PYTHONPATH=str(ROOT))
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", *self.command(base)],
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, cwd=self.root_dir)
        self._wait_ready()

    def command(self, base: Path) -> list[str]:
        """The arguments after ``python -m`` that start the server."""
        raise NotImplementedError

    def notebook_url(self, name: str) -> str:
        """The address of the notebook ``name`` (in the root folder), token included."""
        raise NotImplementedError

    def server_args(self, command: str) -> list[str]:
        """``jupyter <command>`` with what every Jupyter server here shares: loopback, this
        port only, this token, this root folder."""
        return [
            "jupyter", command, "--allow-root", "--no-browser",
            "--ip=127.0.0.1", f"--port={self.port}", "--port-retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root_dir}",
        ]

    def _api(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            body = reply.read()
        try:
            return json.loads(body or b"null")
        except ValueError:  # an HTML page (Voila's tree)
            return body

    def _wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.app} exited with {self.proc.returncode}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                self._api(self.ready_path)
                return
            except OSError:  # not listening yet: wait a little on the process itself
                try:
                    self.proc.wait(0.2)
                except subprocess.TimeoutExpired:
                    pass
        raise RuntimeError(f"{self.app} did not answer in time:\n"
                           + self.log_path.read_text()[-3000:])

    def copy_in(self, notebook: Path) -> str:
        """Copy ``notebook`` into the server's root under a fresh name; return that name."""
        name = f"{notebook.stem}-{secrets.token_hex(3)}{notebook.suffix}"
        shutil.copy(notebook, self.root_dir / name)
        for extra in notebook.parent.glob("*.py"):  # scripts a notebook %runs
            shutil.copy(extra, self.root_dir / extra.name)
        return name

    def _stop(self) -> None:
        """Ask the server to shut down (it shuts its kernels down first)."""
        self._api("/api/shutdown", method="POST")

    def close(self) -> None:
        """Shut the server down; kill it (by its PID) if it hangs."""
        try:
            self._stop()
            self.proc.wait(20)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()


class LabServer(JupyterServer):
    """JupyterLab 4, with the news, update checks and extension manager turned off."""

    app = "JupyterLab"

    def command(self, base: Path) -> list[str]:
        return [
            *self.server_args("lab"),
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly", "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={self.settings_dir}",
            f"--LabApp.workspaces_dir={base / 'workspaces'}",
        ]

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"


def _write_settings(settings: Path) -> None:
    values = {
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                        "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker": {"autoStartDefaultKernel": True},
    }
    for key, value in values.items():
        package, plugin = key.rsplit("/", 1)
        path = settings / package / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


class LabPage:
    """One browser tab on one notebook copy (in JupyterLab or Notebook 7: same app API)."""

    def __init__(self, server: JupyterServer, page: Any) -> None:
        self.server = server
        self.page = page

    def open(self, notebook: Path) -> None:
        """Open a copy of ``notebook`` and wait until its kernel is idle."""
        name = self.server.copy_in(notebook)
        self.page.goto(self.server.notebook_url(name))
        self.page.wait_for_function(READY_JS, timeout=90_000)

    def run_all(self) -> None:
        """Start running every cell (does not wait for them)."""
        self.page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    def run_code(self, code: str) -> None:
        """Append a cell with ``code`` at the end and run it (does not wait for it)."""
        self.page.evaluate("""async (code) => {
          const app = window.jupyterapp;
          const notebook = app.shell.currentWidget.content;
          notebook.activeCellIndex = notebook.widgets.length - 1;
          await app.commands.execute('notebook:insert-cell-below');
          notebook.activeCell.model.sharedModel.setSource(code);
          app.commands.execute('notebook:run-cell');
        }""", code)

    def wait_for_text(self, text: str, timeout_s: float = 60.0) -> None:
        """Wait until ``text`` shows in the notebook's outputs (not in its code)."""
        self.page.wait_for_function(
            "([sel, text]) => Array.from(document.querySelectorAll(sel))"
            ".some(o => o.innerText.includes(text))",
            arg=[f"{PANEL} .jp-OutputArea", text], timeout=timeout_s * 1000, polling=50)

    def outputs_text(self) -> str:
        """The text of every output area of the notebook."""
        return self.page.evaluate(
            "(sel) => Array.from(document.querySelectorAll(sel)).map(o => o.innerText)"
            ".join('\\n')", f"{PANEL} .jp-OutputArea")

    def bar_widths(self) -> list[float]:
        """Widths (%) of every run view's bar in the notebook, in page order (header first)."""
        return self.page.evaluate("""(sel) => Array.from(document.querySelectorAll(
            sel + ' .sw-run .sw-r > i > i')).map(b => parseFloat(b.style.width) || 0)""", PANEL)

    def set_theme(self, name: str) -> None:
        """Switch JupyterLab's theme (``JupyterLab Light`` or ``JupyterLab Dark``)."""
        self.page.evaluate("""async (theme) => {
          await window.jupyterapp.commands.execute('apputils:change-theme', {theme});
        }""", name)
        self.page.wait_for_function(
            "(theme) => document.body.dataset.jpThemeName === theme", arg=name)

    def wait_for_comm_subshell(self, timeout_s: float = 20.0) -> None:
        """Wait until every widget comm of the kernel sends on JupyterLab's comm subshell.

        JupyterLab 4.6 asks the kernel for that subshell when the first widget appears
        and sends comm messages on the main shell until the reply arrives (a few hundred
        ms behind a new view's messages): a click before then waits for the running cell.
        """
        self.page.wait_for_function("""() => {
          const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
          const comms = Array.from(kernel._comms.values())
            .filter(comm => comm.targetName === 'jupyter.widget');
          return comms.length > 0 && comms.every(comm => comm.subshellId);
        }""", timeout=timeout_s * 1000, polling=50)

    def click(self, label: str) -> None:
        """Click the last visible ipywidgets button labelled ``label``."""
        self.page.locator(f"{PANEL} .widget-button", has_text=label).last.click()

    def screenshot(self, name: str) -> Path:
        """Save a PNG of the page under artifacts/screenshots/."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        """Shut this notebook's kernel down and close the tab."""
        self.page.evaluate("""async () => {
          const panel = window.jupyterapp.shell.currentWidget;
          if (panel && panel.sessionContext) { await panel.sessionContext.shutdown(); }
        }""")
        self.page.close()


def require_chromium() -> None:
    """Skip the test when Debian's Chromium is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/test installs it)")


@pytest.fixture(scope="session")
def lab_server() -> Iterator[LabServer]:
    require_chromium()
    base = Path(tempfile.mkdtemp(prefix="stagewidget-lab-"))
    server = LabServer(base)
    yield server
    server.close()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # module scope: Playwright's sync API keeps an event loop running in this thread
    # until it stops, which would break later tests that call asyncio.run()
    from playwright.sync_api import sync_playwright

    require_chromium()
    profile = tempfile.mkdtemp(prefix="stagewidget-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000})
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def lab(lab_server: LabServer, browser: Any) -> Iterator[LabPage]:
    page = LabPage(lab_server, browser.new_page())
    yield page
    page.close()
