"""A headless notebook (papermill) whose kernel shuts down with an unfinished run warns
on the kernel's stderr, which papermill shows; the kernel does not wait for the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import WAIT_S
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.integration

SETUP = """
import threading
import stagewidget as sw

never = threading.Event()

def slow(_):
    for _ in sw.track(iter(int, 1)):  # endless: only the kernel's end stops it
        never.wait(0.01)

pipe = sw.Pipeline("slow-pipe", [slow])
"""


def papermill(tmp_path: Path, *cells: str) -> subprocess.CompletedProcess[str]:
    """``papermill in.ipynb out.ipynb`` in a subprocess; its output as text."""
    nb = new_notebook(cells=[new_code_cell(c) for c in (SETUP, *cells)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    return subprocess.run(
        [Path(sys.executable).with_name("papermill"), "in.ipynb", "out.ipynb",
         "-k", "python3", "--no-progress-bar"],
        cwd=tmp_path, capture_output=True, text=True, timeout=WAIT_S * 6)


def test_kernel_shutdown_with_an_unfinished_run_warns_on_stderr(tmp_path) -> None:
    done = papermill(tmp_path, "run = pipe.start(None)")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "stagewidget: warning" in line]
    assert len(warnings) == 1, done.stderr
    assert "the kernel is shutting down while run " in warnings[0]
    assert "of pipeline 'slow-pipe' is still running in stage 'slow'" in warnings[0]
    assert "end with run.wait() or use pipe.run(...)" in warnings[0]


def test_kernel_shutdown_after_runs_ended_says_nothing(tmp_path) -> None:
    done = papermill(tmp_path, "run = pipe.start(None)\nrun.cancel()\nrun.wait()")
    assert done.returncode == 0, done.stderr
    assert "stagewidget" not in done.stderr
