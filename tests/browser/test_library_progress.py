"""Library progress in real JupyterLab 4 (headless Chromium): a stage whose code only
calls a tqdm-drawing library shows that library's bars moving in the stage's view, and
no tqdm widget or tqdm text lands in any cell. Screenshot: artifacts/screenshots/.
"""

from __future__ import annotations

from pathlib import Path

import lab as harness
import nbformat
import pytest
from lab import PANEL, LabPage

pytestmark = pytest.mark.integration
lab_server, browser, lab = harness.lab_server, harness.browser, harness.lab  # the fixtures

# "Library" code: it knows nothing of stagewidget and draws with tqdm.auto, which in a
# kernel means tqdm.notebook's ipywidgets bars.
LIBRARY = """
import time
from tqdm.auto import tqdm

def fit(epochs, steps):
    for epoch in tqdm(range(epochs), desc="epochs"):
        for step in tqdm(range(steps), desc="steps", leave=False):
            time.sleep(0.02)
    return epochs * steps
"""

START = """
import stagewidget as sw

def train(epochs):
    return fit(epochs, 40)  # unchanged library code: no sw.track, no sw.advance

run = sw.Pipeline("library", [train]).start(1000)
"""

# Distinct counts of the inner "steps" level seen by polling the stage's view.
INNER_COUNTS = """(sel) => {
  const seen = window.__steps = window.__steps || new Set();
  for (const pre of document.querySelectorAll(sel + ' .sw-run pre')) {
    const m = pre.innerText.match(/↳ steps .*?(\\d+)\\/40/);
    if (m && m[1] !== '0' && m[1] !== '40') seen.add(m[1]);
  }
  return seen.size >= 2;
}"""

RECORD_RUN_BAR = """() => {
  window.__widths = [];
  new MutationObserver(() => {
    for (const bar of document.querySelectorAll('.sw-run .sw-r > i > i')) {
      window.__widths.push(parseFloat(bar.style.width) || 0);
    }
  }).observe(document.body, {childList: true, subtree: true});
}"""

STRAY_BARS = """(sel) => Array.from(document.querySelectorAll(sel + ' .widget-hprogress'))
  .filter(bar => !bar.closest('.sw-run')).length"""

TEXT_OUTPUTS = """(sel) => Array.from(document.querySelectorAll(sel + ' .jp-RenderedText'))
  .map(o => o.innerText).join('\\n')"""


def notebook(tmp_path: Path) -> Path:
    path = tmp_path / "library.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(LIBRARY)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def test_library_tqdm_bars_move_in_the_stage_view_and_nowhere_else(
        lab: LabPage, tmp_path: Path) -> None:
    lab.open(notebook(tmp_path))
    lab.page.evaluate(RECORD_RUN_BAR)
    lab.run_all()
    lab.run_code(START)
    lab.wait_for_text("running")
    lab.run_code("print('another cell ran')")  # a cell run while the library draws
    lab.page.wait_for_function(INNER_COUNTS, arg=PANEL, timeout=30_000, polling=50)
    lab.page.wait_for_function(
        "() => new Set(window.__widths.filter(w => w > 0 && w < 100)).size >= 2",
        timeout=30_000, polling=50)  # the stage's bar, driven by the "epochs" bar
    lab.wait_for_text("another cell ran")
    lab.screenshot("library-progress-mid-run")
    assert lab.page.evaluate(STRAY_BARS, PANEL) == 0  # no tqdm.notebook widget in a cell
    text = lab.page.evaluate(TEXT_OUTPUTS, PANEL)
    assert "it/s" not in text and "%|" not in text and "epochs" not in text, text
    lab.click("Cancel")  # the library loop never calls stagewidget: its bar stops it
    lab.wait_for_text("Cancelled: Retry resumes")
    assert lab.page.evaluate(STRAY_BARS, PANEL) == 0
