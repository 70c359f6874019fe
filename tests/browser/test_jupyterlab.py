"""The widget view in real JupyterLab 4 driven by headless Chromium: bars that move, a
kernel that stays interactive, Cancel, a failure with its traceback and Retry.

Screenshots (mid-run, finished, failed) go to artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lab as harness
import nbformat
import pytest
from lab import SCREENSHOTS, LabPage

pytestmark = pytest.mark.integration
lab_server, browser, lab = harness.lab_server, harness.browser, harness.lab  # the fixtures

ROOT = Path(__file__).resolve().parents[2]

# Every width a run view's bars take (their HTML is redrawn, so watch the whole tree)
RECORD_WIDTHS = """() => {
  window.__widths = [];
  new MutationObserver(() => {
    for (const bar of document.querySelectorAll('.sw-run .sw-r > i > i')) {
      window.__widths.push(parseFloat(bar.style.width) || 0);
    }
  }).observe(document.body, {childList: true, subtree: true});
}"""

SPIN = """
import stagewidget as sw

def spin(seconds):
    import time
    end = time.perf_counter() + seconds
    for i in sw.track(range(10**9), desc="items"):
        if i % 1000 == 0 and time.perf_counter() > end:
            return i
"""


def empty_notebook(tmp_path: Path) -> Path:
    path = tmp_path / "scratch.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import stagewidget as sw")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def scaled_copy(notebook: Path, tmp_path: Path, scale: float) -> Path:
    """A copy of ``notebook`` that runs at ``scale`` whatever the kernel's environment says
    (the test configuration's 0.02 is too quick to see a bar between 0 and 100 %)."""
    nb = nbformat.read(notebook, as_version=4)
    first = next(cell for cell in nb.cells if cell.cell_type == "code")
    first.source = (f"import os\nos.environ['STAGEWIDGET_NOTEBOOK_SCALE'] = '{scale}'\n"
                    + first.source)
    path = tmp_path / notebook.name
    nbformat.write(nb, path)
    return path


def test_model_training_bars_advance_and_the_run_succeeds(lab: LabPage, tmp_path: Path) -> None:
    # 150 epochs, as many as this notebook trained for before it read the scale
    lab.open(scaled_copy(ROOT / "notebooks" / "02-model-training.ipynb", tmp_path, 0.075))
    lab.page.evaluate(RECORD_WIDTHS)
    lab.run_all()
    lab.page.wait_for_function("() => window.__widths.some(w => w > 0 && w < 100)",
                               timeout=60_000, polling=20)
    lab.screenshot("02-model-training-mid-run")
    lab.wait_for_text("test accuracy above 0.9: True")
    lab.wait_for_text("succeeded")
    widths = lab.page.evaluate("() => window.__widths")
    moving = sorted({w for w in widths if 0 < w < 100})
    assert len(moving) >= 2, widths  # the bars advanced through several values
    assert lab.bar_widths()[0] == 100  # the overall bar ends full
    lab.screenshot("02-model-training-finished")


def test_kernel_answers_a_cell_while_a_pipeline_runs(lab: LabPage, tmp_path: Path) -> None:
    lab.open(empty_notebook(tmp_path))
    lab.run_code(SPIN + "run = sw.Pipeline('long', [spin]).start(60)")
    lab.wait_for_text("running")
    sent = time.monotonic()
    lab.run_code("print(6 * 7, run.status().state.value)")
    lab.wait_for_text("42 running")
    latency_s = time.monotonic() - sent
    lab.screenshot("interactive-while-running")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "interactive-latency.json").write_text(json.dumps({"latency_s": latency_s}))
    print(f"a cell run while the pipeline works answered in {latency_s * 1000:.0f} ms")
    lab.click("Cancel")
    lab.wait_for_text("cancelled")


def test_cancel_button_ends_the_run_cancelled(lab: LabPage, tmp_path: Path) -> None:
    lab.open(empty_notebook(tmp_path))
    lab.run_code(SPIN + "run = sw.Pipeline('to-cancel', [spin]).start(60)")
    lab.wait_for_text("running")
    lab.click("Cancel")
    lab.wait_for_text("Cancelled: Retry resumes")
    lab.run_code("print('state is', run.wait(10).state.value)")
    lab.wait_for_text("state is cancelled")


def test_failure_shows_the_traceback_and_retry_runs_the_fixed_stage(
        lab: LabPage, tmp_path: Path) -> None:
    lab.open(empty_notebook(tmp_path))
    lab.run_code("""
import stagewidget as sw
pipe = sw.Pipeline("flaky")

@pipe.stage
def load(n):
    return list(range(n))

@pipe.stage
def check(items):
    raise ValueError(f"bad batch of {len(items)}")

run = pipe.start(5)
""")
    lab.wait_for_text("ValueError: bad batch of 5")
    lab.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .sw-run summary",
                     has_text="Error").last.click()
    lab.wait_for_text("Traceback")
    lab.screenshot("failed-with-traceback")
    lab.run_code("""
@pipe.stage
def check(items):
    return sum(items)
""")
    lab.click("Retry")
    lab.wait_for_text("flaky")  # the retry's own view, inside the first one
    lab.run_code("print('retried:', sw.runs()[-1].wait(30).state.value, sw.runs()[-1].result())")
    lab.wait_for_text("retried: succeeded 10")
    lab.screenshot("retried")


def test_cancel_works_during_a_blocking_run(lab: LabPage, tmp_path: Path) -> None:
    # JupyterLab 4.6 sends widget messages on a kernel subshell (ipykernel 7): the click
    # is handled while the main shell is busy in pipe.run(), once that subshell exists
    lab.open(empty_notebook(tmp_path))
    lab.run_code(SPIN + """
try:
    sw.Pipeline("blocking", [spin]).run(60)
except BaseException as exc:
    print("pipe.run ended:", type(exc).__name__)
""")
    lab.wait_for_text("running")
    lab.wait_for_text("it/s")  # the stage runs and its progress reached the page
    lab.wait_for_comm_subshell()  # else the click queues behind pipe.run (2 of 5 full runs)
    lab.click("Cancel")
    lab.wait_for_text("pipe.run ended: Cancelled", timeout_s=20)


GRID = """(sel) => {
  const grids = document.querySelectorAll(sel + ' .sw-run .sw-grid');
  const grid = grids[grids.length - 1];
  const box = grid.getBoundingClientRect();
  const bars = Array.from(grid.querySelectorAll('.sw-r > i')).map(b => b.getBoundingClientRect());
  const cancel = grid.querySelector(':scope > .widget-button:not(.sw-retry)');
  const c = cancel.getBoundingClientRect();
  return {left: box.left, width: box.width, scroll: grid.scrollWidth, client: grid.clientWidth,
          bars: bars.map(b => [b.left, b.width]), color: getComputedStyle(grid).color,
          cancel: [c.left, c.width, cancel.scrollWidth - cancel.clientWidth]};
}"""

THREE_STAGES = """
import logging, threading
import stagewidget as sw
gate = threading.Event()
pipe = sw.Pipeline("layout")

@pipe.stage
def load(n):
    return list(range(n))

@pipe.stage
def a_longer_stage_name(items):
    for i in sw.track(items, desc="items"):
        sw.report(loss=1 / (i + 1))
        if i == len(items) // 2:
            logging.getLogger("user").warning("half way")
            gate.wait(60)
    return items

@pipe.stage
def save(items):
    return len(items)

run = pipe.start(40)
"""


def grid(lab: LabPage) -> dict:
    return lab.page.evaluate(GRID, harness.PANEL)


def assert_cancel_at_the_right_edge(layout: dict) -> None:
    left, width, clipped = layout["cancel"]
    assert abs(left + width - (layout["left"] + layout["width"])) <= 1, layout
    assert left >= layout["left"] and clipped <= 0, layout  # whole, inside the grid


def assert_bars_aligned(layout: dict) -> None:
    lefts = {round(left) for left, _ in layout["bars"]}
    widths = {round(width) for _, width in layout["bars"]}
    assert len(layout["bars"]) == 4, layout  # the header's and one per stage
    assert max(lefts) - min(lefts) <= 1 and max(widths) - min(widths) <= 1, layout


def test_rows_align_as_one_grid_in_light_dark_and_a_narrow_panel(
        lab: LabPage, tmp_path: Path) -> None:
    lab.page.set_viewport_size({"width": 1200, "height": 900})
    lab.open(empty_notebook(tmp_path))
    try:
        lab.run_code(THREE_STAGES)
        lab.wait_for_text("half way")
        wide = grid(lab)
        assert_bars_aligned(wide)
        assert wide["bars"][0][1] > 0.3 * wide["width"], wide  # bars take the free width
        assert_cancel_at_the_right_edge(wide)
        lab.screenshot("layout-light-1200")
        lab.set_theme("JupyterLab Dark")
        lab.screenshot("layout-dark-1200")
        dark = grid(lab)
        assert dark["color"] != wide["color"], (dark, wide)  # text follows the theme
        lab.set_theme("JupyterLab Light")
        lab.page.set_viewport_size({"width": 350, "height": 900})
        lab.page.evaluate("() => { window.jupyterapp.shell.collapseLeft();"
                          " window.jupyterapp.shell.collapseRight(); }")
        lab.page.wait_for_function(
            "(sel) => document.querySelector(sel + ' .sw-run').getBoundingClientRect().width"
            " > 100", arg=harness.PANEL)
        lab.screenshot("layout-light-350")
        narrow = grid(lab)
        assert 100 < narrow["width"] < 350, narrow
        assert_bars_aligned(narrow)
        assert narrow["scroll"] <= narrow["client"] + 1, narrow  # no sideways scrolling
        assert narrow["bars"][0][1] >= 60, narrow
        assert_cancel_at_the_right_edge(narrow)  # on a line of its own, as far right
        lab.run_code("gate.set(); print('ended', run.wait(30).state.value)")
        lab.wait_for_text("ended succeeded")
        lab.page.set_viewport_size({"width": 1200, "height": 900})
        assert_bars_aligned(grid(lab))
        lab.screenshot("layout-light-1200-finished")
    finally:
        lab.set_theme("JupyterLab Light")
        lab.page.evaluate("() => window.jupyterapp.shell.expandLeft()")
        lab.page.set_viewport_size({"width": 1400, "height": 1000})
