"""``scripts/demo --lab``: JupyterLab on the model-training notebook, for real.

The demo runs as ``python -m stagewidget demo --lab`` (what the script execs) in a process
of its own, on a copy of the notebooks (JupyterLab may autosave); the script's dispatch to
it is checked on its own, with a recording stand-in for the venv.
"""

from __future__ import annotations

import html
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lab as harness
import pytest
from conftest import WAIT_S
from lab import SCREENSHOTS
from processes import alive
from servers import free_port

pytestmark = pytest.mark.integration
browser = harness.browser  # the fixture

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "02-model-training.ipynb"
URL = re.compile(r"(http://127\.0\.0\.1:(\d+)/lab/tree/(\S+)\?token=([0-9a-f]+))\s*$")
START_S = 120.0


class Demo:
    """``python -m stagewidget demo --lab`` as a subprocess; its output read by a thread."""

    def __init__(self, tmp_path: Path, *, port: int, extra: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.notebooks = tmp_path / "notebooks"
        self.notebooks.mkdir()
        shutil.copy(ROOT / "notebooks" / NOTEBOOK, self.notebooks)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stagewidget", "demo", "--lab", "--port", str(port),
             "--notebooks", str(self.notebooks), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            # its own Jupyter data folder: JupyterLab's notebook trust database goes there
            env=dict(os.environ, PYTHONPATH=str(ROOT), JUPYTER_DATA_DIR=str(tmp_path / "data"),
                     **(env or {})), cwd=tmp_path)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self._ended = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for_url(self) -> re.Match[str]:
        """The URL line of the banner (fails on exit or after ``START_S``)."""
        deadline = time.monotonic() + START_S
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError("no URL printed in time:\n" + "".join(self.output)) from None
            if line is None:
                self._ended = True
                raise AssertionError("the demo exited:\n" + "".join(self.output))
            self.output.append(line)
            if match := URL.search(line):
                return match

    def rest(self) -> str:
        """Everything printed after the URL, once the process has exited."""
        self._reader.join(WAIT_S)
        while not self._ended:
            line = self.lines.get_nowait()
            if line is None:
                self._ended = True
            else:
                self.output.append(line)
        return "".join(self.output)

    def close(self) -> None:
        """After a failed test: stop the demo (it stops JupyterLab), by its PID."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def demo(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Demo]:
    harness.require_chromium()
    extra: tuple[str, ...] = ()
    env = {}
    if getattr(request, "param", "") == "--open":
        # a "browser" (webbrowser honours $BROWSER) that keeps the page it was given
        browser = tmp_path / "browser"
        browser.write_text(f'#!/bin/sh\ncat "${{1#file://}}" > {tmp_path / "opened.html"}\n')
        browser.chmod(0o755)
        extra, env = ("--open",), {"BROWSER": str(browser)}
    running = Demo(tmp_path, port=free_port(), extra=extra, env=env)
    yield running
    running.close()


def wait_for_file(proc: subprocess.Popen[str], path: Path) -> str:
    deadline = time.monotonic() + WAIT_S
    while not path.exists() or not path.stat().st_size:
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing was written to {path}")
        try:  # not yet: wait a little, on the demo process itself
            proc.wait(0.1)
            raise AssertionError(f"the demo exited with {proc.returncode}")
        except subprocess.TimeoutExpired:
            pass
    return path.read_text()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def api(base: str, token: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{base}{path}", data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def wait_for_kernel(proc: subprocess.Popen[str], base: str, token: str) -> dict[str, Any]:
    """The session of the notebook once it has a kernel (the page starts it)."""
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        sessions = [s for s in api(base, token, "/api/sessions")
                    if s["path"] == NOTEBOOK and s.get("kernel")]
        if sessions:
            return sessions[0]
        try:  # no kernel yet: wait a little, on the demo process itself
            proc.wait(0.25)
            raise AssertionError(f"the demo exited with {proc.returncode}")
        except subprocess.TimeoutExpired:
            pass
    raise AssertionError(f"no kernel for {NOTEBOOK} in {START_S:g} s")


def stop_and_check(demo: Demo, signum: int, pids: list[int]) -> None:
    demo.proc.send_signal(signum)
    assert demo.proc.wait(60) == 0
    assert "stopping JupyterLab and its kernels" in demo.rest()
    assert [pid for pid in pids if alive(pid)] == []


def test_demo_lab_serves_the_notebook_and_ctrl_c_stops_it_and_its_kernel(
        demo: Demo, browser: Any) -> None:
    match = demo.wait_for_url()
    url, port, path, token = match.groups()
    base = f"http://127.0.0.1:{port}"
    assert path == NOTEBOOK
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        assert NOTEBOOK in reply.read().decode()
    page = browser.new_page()
    page.goto(url)
    page.locator(".lm-TabBar-tabLabel", has_text=NOTEBOOK).first.wait_for(timeout=90_000)
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=90_000)
    session = wait_for_kernel(demo.proc, base, token)
    assert session["kernel"]["name"] == "python3"
    assert page.locator(".jp-Dialog").count() == 0  # no kernel picker, no other pop-up
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "demo-lab.png"))
    pids = descendants(demo.proc.pid)
    assert len(pids) >= 2, pids  # JupyterLab and the notebook's kernel
    page.close()
    stop_and_check(demo, signal.SIGINT, pids)


@pytest.mark.parametrize("demo", ["--open"], indirect=True)
def test_demo_lab_opens_a_browser_and_stops_its_kernels_on_sigterm(
        demo: Demo, tmp_path: Path) -> None:
    url, port, _, token = demo.wait_for_url().groups()
    # the browser got a page that redirects to the URL; the token is not on its command line
    opened = wait_for_file(demo.proc, tmp_path / "opened.html")
    assert opened == f'<meta http-equiv="refresh" content="0;url={html.escape(url)}">'
    base = f"http://127.0.0.1:{port}"
    api(base, token, "/api/sessions", {"path": NOTEBOOK, "type": "notebook", "name": "",
                                       "kernel": {"name": "python3"}})
    wait_for_kernel(demo.proc, base, token)
    pids = descendants(demo.proc.pid)
    assert len(pids) >= 2, pids
    stop_and_check(demo, signal.SIGTERM, pids)
    log = re.search(r"JupyterLab's log: (\S+)\)", demo.rest())
    assert log and not Path(log.group(1)).parent.exists()  # its temporary folder is gone


@pytest.mark.parametrize(("argv", "extras"), [
    (["--lab", "--port", "8888"], "test,bench,notebooks,lab"),
    (["--epochs", "3"], "test,bench,notebooks"),
])
def test_scripts_demo_sets_up_and_dispatches_to_the_python_entry(
        tmp_path: Path, argv: list[str], extras: str) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "demo", tmp_path / "scripts" / "demo")
    record = tmp_path / "calls"
    fake = f'#!/bin/sh\necho "$0 $*" >> {record}\n'
    (tmp_path / "scripts" / "setup").write_text(fake)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text(fake)
    for script in ("scripts/setup", ".venv/bin/python"):
        (tmp_path / script).chmod(0o755)
    subprocess.run([tmp_path / "scripts" / "demo", *argv], check=True, timeout=WAIT_S,
                   cwd=tmp_path / "scripts")
    assert record.read_text().splitlines() == [
        f"{tmp_path}/scripts/setup .venv {extras}",
        f"{tmp_path}/.venv/bin/python -m stagewidget demo {' '.join(argv)}",
    ]
