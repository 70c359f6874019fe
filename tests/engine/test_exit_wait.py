"""A script ending with unfinished runs waits for them (bounded), says so, and Ctrl-C
cancels them; real ``python script.py`` processes."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from conftest import WAIT_S

from stagewidget.engine import shutdown

HOLD = """
import sys
import stagewidget as sw

def work(_):
    for _ in sw.track(range(3)):
        pass
    open(sys.argv[1]).read()  # a FIFO: the test opens it once the program is exiting
    return "done"

sw.Pipeline("train-model", [work]).start(None)
"""

ENDLESS = """
import stagewidget as sw

def train(_):
    for _ in sw.track(iter(int, 1)):
        pass

sw.Pipeline("endless", [train]).start(None)
"""


class Script:
    """``python script.py`` with its stderr read line by line in a thread."""

    def __init__(self, tmp_path: Path, code: str, *args: str, **env: str) -> None:
        path = tmp_path / "script.py"
        path.write_text(textwrap.dedent(code))
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, str(path), *args], stderr=subprocess.PIPE, text=True,
            env={**os.environ, **env}, cwd=tmp_path)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("<eof>")

    def wait_for_line(self, needle: str) -> str:
        """Block until a stderr line contains ``needle``; return it."""
        while True:
            try:
                line = self.lines.get(timeout=WAIT_S)
            except queue.Empty:
                raise AssertionError(f"no line with {needle!r}; seen: {self.seen}") from None
            self.seen.append(line)
            if needle in line:
                return line
            if line == "<eof>":
                raise AssertionError(f"no line with {needle!r}; seen: {self.seen}")

    def finish(self) -> int:
        code = self.proc.wait(WAIT_S)
        while not self.seen or self.seen[-1] != "<eof>":
            self.seen.append(self.lines.get(timeout=WAIT_S))
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT_S)


@pytest.fixture
def script(tmp_path):
    started: list[Script] = []

    def make(code: str, *args: str, **env: str) -> Script:
        started.append(Script(tmp_path, code, *args, **env))
        return started[-1]

    yield make
    for one in started:
        one.kill()


def test_script_ending_after_start_waits_for_its_run_and_prints_its_end(script, tmp_path
                                                                         ) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    proc = script(HOLD, str(gate), STAGEWIDGET_EXIT_TIMEOUT_S="")  # the default
    notice = proc.wait_for_line("stagewidget: waiting")
    assert notice == ("stagewidget: waiting up to 300 s for 1 unfinished run "
                      "(train-model, running 'work'); Ctrl-C cancels")
    gate.write_text("go")  # the program is exiting now; let the run finish
    proc.wait_for_line("train-model succeeded")
    assert proc.finish() == 0


def test_ctrl_c_during_the_exit_wait_cancels_the_runs_and_exits(script) -> None:
    proc = script(ENDLESS)
    proc.wait_for_line("Ctrl-C cancels")
    proc.proc.send_signal(signal.SIGINT)
    assert proc.wait_for_line("stagewidget: Ctrl-C: cancelling") == (
        "stagewidget: Ctrl-C: cancelling 1 unfinished run (endless, running 'train')")
    proc.wait_for_line("endless cancelled")  # the run recorded it before the exit
    proc.finish()


def test_exit_wait_is_bounded_by_the_configured_timeout(script) -> None:
    proc = script(ENDLESS, STAGEWIDGET_EXIT_TIMEOUT_S="0.5")
    assert "waiting up to 0.5 s" in proc.wait_for_line("stagewidget: waiting")
    assert proc.wait_for_line("stagewidget: gave up") == (
        "stagewidget: gave up after 0.5 s; cancelling 1 unfinished run (endless, running "
        "'train')")
    proc.wait_for_line("endless cancelled")
    proc.finish()


def test_exit_timeout_zero_does_not_wait_but_says_so(script) -> None:
    proc = script(ENDLESS, STAGEWIDGET_EXIT_TIMEOUT_S="0")
    assert proc.wait_for_line("stagewidget: not waiting") == (
        "stagewidget: not waiting for 1 unfinished run (endless, running 'train') "
        "(STAGEWIDGET_EXIT_TIMEOUT_S=0); it stops unfinished")
    assert proc.finish() == 0


def test_exit_hook_is_registered_at_the_first_run_not_at_import(script) -> None:
    proc = script("""
        import sys, threading
        import stagewidget as sw
        from stagewidget.engine import shutdown
        def registered():
            return any(getattr(c, "func", c) is shutdown._at_exit
                       for c in threading._threading_atexits)
        before = registered()
        sw.Pipeline("p", [lambda _: 1]).run(None, display=False)
        after = registered()
        print(f"before={before} after={after}", file=sys.stderr)
    """)
    assert proc.wait_for_line("before=") == "before=False after=True"
    assert proc.finish() == 0


@pytest.mark.parametrize("text, seconds", [("", 300.0), ("12.5", 12.5), ("0", 0.0),
                                           ("inf", float("inf")), ("none", float("inf")),
                                           ("soon", 300.0), ("-1", 300.0)])
def test_exit_timeout_comes_from_the_environment(monkeypatch, text, seconds) -> None:
    monkeypatch.setenv(shutdown.EXIT_TIMEOUT_ENV, text)
    assert shutdown.exit_timeout_s() == seconds


def test_the_exit_notice_names_a_few_runs_and_counts_the_rest(script) -> None:
    proc = script(ENDLESS.replace('.start(None)', '.start(None)\n'
                                  'for _ in range(4):\n'
                                  '    sw.Pipeline("endless", [train]).start(None)'),
                  STAGEWIDGET_EXIT_TIMEOUT_S="0")
    line = proc.wait_for_line("stagewidget: not waiting")
    assert line.startswith("stagewidget: not waiting for 5 unfinished runs (")
    assert line.count("endless, ") == 3 and "; and 2 more)" in line
    assert proc.finish() == 0
