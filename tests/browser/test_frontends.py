"""The widget view in the other front ends the issue names, with real servers on 127.0.0.1
and headless Chromium: Notebook 7 (a running three-stage view, its grid wide and narrow,
Cancel) and Voila (the final view of a run that ended while the notebook executed; a
failure in the dark theme with its traceback and Retry; a run still going, then Cancel).

JupyterLab 4 is tested in test_jupyterlab.py. Screenshots go to artifacts/screenshots/
(git-ignored): notebook7-running, notebook7-running-400, notebook7-cancelled,
voila-finished, voila-dark-failed, voila-dark-retried, voila-running, voila-cancelled.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lab as harness
import nbformat
import pytest
from lab import JupyterServer, LabPage

pytestmark = pytest.mark.integration
browser = harness.browser  # the fixture


def three_stages(middle: str, end: str) -> str:
    """A notebook cell: load -> a_longer_stage_name (``middle``, indented) -> save; ``end``."""
    return f"""
import threading
import stagewidget as sw
pipe = sw.Pipeline("frontends")

@pipe.stage
def load(n):
    return list(range(n))

@pipe.stage
def a_longer_stage_name(items):
{middle}
@pipe.stage
def save(items):
    return len(items)

run = pipe.start(40)
{end}"""


# A run held at half of its middle stage until it is cancelled: the view stays still.
HELD = three_stages("""\
    idle = threading.Event()  # never set: a pause between looks at the cancel flag
    for i in sw.track(items, desc="items"):
        if i == len(items) // 2:
            sw.report("held at half way")
            while not sw.cancelled():
                idle.wait(0.05)
    return items
""", "")

# A run that ends while its cell executes (Voila shows the page once all cells ran).
FINISHED = three_stages("""\
    return [x for x in sw.track(items, desc="items")]
""", 'print("the run ended", run.wait(60).state.value)\n')

# The last run view's grid, its rows in on-screen order (CSS ``order`` moves the running
# stage's row): the name cells' text, the bars' tracks and fills, the colours, the buttons.
GRID = """(scope) => {
  const grids = document.querySelectorAll(scope + ' .sw-run .sw-grid');
  const grid = grids[grids.length - 1];
  const box = (el) => { const b = el.getBoundingClientRect(); return [b.left, b.width]; };
  const rows = Array.from(grid.querySelectorAll('.sw-r')).map(r => ({
    top: r.querySelector(':scope > b').getBoundingClientRect().top,
    name: r.querySelector(':scope > b').innerText,
    track: box(r.querySelector(':scope > i')),
    fill: box(r.querySelector(':scope > i > i')),
    styled: parseFloat(r.querySelector(':scope > i > i').style.width) || 0,
  })).sort((a, b) => a.top - b.top);
  const bar = grid.querySelector('.sw-r > i');
  const visible = (el) => el.getBoundingClientRect().width > 0
    && getComputedStyle(el).display !== 'none';
  return {
    names: rows.map(r => r.name), tracks: rows.map(r => r.track),
    fills: rows.map(r => r.fill), styled: rows.map(r => r.styled),
    fill_colour: getComputedStyle(bar.firstElementChild).backgroundColor,
    track_colour: getComputedStyle(bar).backgroundColor,
    buttons: Array.from(grid.querySelectorAll(':scope > .widget-button')).filter(visible)
      .map(b => b.innerText.trim()),
    scroll: grid.scrollWidth, client: grid.clientWidth, colour: getComputedStyle(grid).color,
  };
}"""

# A run whose second stage fails once: Retry (from the page) runs it again, and it passes.
FAILS_ONCE = """
import stagewidget as sw
pipe = sw.Pipeline("frontends")
failures = [ValueError("bad batch")]

@pipe.stage
def load(n):
    return list(range(n))

@pipe.stage
def a_longer_stage_name(items):
    if failures:
        raise failures.pop()
    return [x for x in sw.track(items, desc="items")]

@pipe.stage
def save(items):
    return len(items)

run = pipe.start(40)
print("the run ended", run.wait(60).state.value)
"""

TRANSPARENT = "rgba(0, 0, 0, 0)"


def lightness(colour: str) -> float:
    """The mean of a CSS ``rgb(...)``/``rgba(...)`` colour's channels, 0 to 255."""
    channels = colour[colour.index("(") + 1:colour.index(")")].split(",")[:3]
    return sum(float(c) for c in channels) / 3


def notebook(tmp_path: Path, name: str, *sources: str) -> Path:
    path = tmp_path / f"{name}.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def assert_rows_drawn(layout: dict[str, Any]) -> None:
    """Four rows (header, three stages) named, bars on one column with the same width,
    coloured by the theme, and nothing scrolling sideways."""
    names = layout["names"]
    assert len(names) == 4, layout
    assert "frontends" in names[0], layout
    for row, stage in zip(names[1:], ("load", "a_longer_stage_name", "save")):
        assert stage in row, layout
    lefts = [left for left, _ in layout["tracks"]]
    widths = [width for _, width in layout["tracks"]]
    assert max(lefts) - min(lefts) <= 1 and max(widths) - min(widths) <= 1, layout
    assert min(widths) > 50, layout
    assert TRANSPARENT not in (layout["fill_colour"], layout["track_colour"]), layout
    assert layout["scroll"] <= layout["client"] + 1, layout


# -- Notebook 7 ---------------------------------------------------------------------------

class NotebookServer(JupyterServer):
    """Jupyter Notebook 7 (a JupyterLab application: the same app API in the page)."""

    app = "Jupyter Notebook"

    def command(self, base: Path) -> list[str]:
        return [
            *self.server_args("notebook"),
            "--JupyterNotebookApp.expose_app_in_browser=True",
            f"--JupyterNotebookApp.user_settings_dir={self.settings_dir}",
            f"--JupyterNotebookApp.workspaces_dir={base / 'workspaces'}",
        ]

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/notebooks/{name}?token={self.token}"


@pytest.fixture(scope="module")
def notebook_server() -> Iterator[NotebookServer]:
    harness.require_chromium()
    base = Path(tempfile.mkdtemp(prefix="stagewidget-notebook7-"))
    server = NotebookServer(base)
    yield server
    server.close()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def nb7(notebook_server: NotebookServer, browser: Any) -> Iterator[LabPage]:
    page = LabPage(notebook_server, browser.new_page())
    yield page
    page.close()


def test_notebook7_draws_the_grid_and_cancel_cancels_the_run(
        nb7: LabPage, tmp_path: Path) -> None:
    nb7.page.set_viewport_size({"width": 1200, "height": 900})
    nb7.open(notebook(tmp_path, "held", HELD))
    nb7.run_all()
    nb7.wait_for_text("held at half way")
    layout = nb7.page.evaluate(GRID, harness.PANEL)
    assert_rows_drawn(layout)
    header, load, held, save = layout["styled"]
    assert 0 < header < 100 and load == 100 and 0 < held < 100 and save == 0, layout
    assert all(width > 0 for _, width in layout["fills"][:3]), layout
    assert layout["buttons"] == ["Cancel"], layout
    nb7.screenshot("notebook7-running")
    nb7.page.set_viewport_size({"width": 400, "height": 900})  # the narrow layout
    nb7.page.wait_for_function(
        "(sel) => document.querySelector(sel + ' .sw-run').getBoundingClientRect().width < 400",
        arg=harness.PANEL)
    narrow = nb7.page.evaluate(GRID, harness.PANEL)
    assert_rows_drawn(narrow)
    nb7.screenshot("notebook7-running-400")
    nb7.page.set_viewport_size({"width": 1200, "height": 900})
    nb7.click("Cancel")
    nb7.wait_for_text("Cancelled: Retry resumes")
    nb7.run_code("print('state is', run.wait(10).state.value)")
    nb7.wait_for_text("state is cancelled")
    layout = nb7.page.evaluate(GRID, harness.PANEL)
    assert_rows_drawn(layout)
    assert "frontends cancelled" in layout["names"][0], layout
    assert layout["buttons"] == ["Retry"], layout
    nb7.screenshot("notebook7-cancelled")


# -- Voila --------------------------------------------------------------------------------

class VoilaServer(JupyterServer):
    """Voila in server mode over its root folder; it renders a notebook at
    /voila/render/NAME, executing it in a kernel of its own that stays for the widgets."""

    app = "Voila"
    ready_path = "/"  # the tree page: no kernel

    def command(self, base: Path) -> list[str]:
        return [
            "voila", "--no-browser", "--Voila.ip=127.0.0.1", f"--Voila.port={self.port}",
            "--Voila.port_retries=0", f"--Voila.token={self.token}",
            f"--Voila.root_dir={self.root_dir}",
        ]

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/voila/render/{name}?token={self.token}"

    def _stop(self) -> None:
        # Voila has no shutdown endpoint; on SIGTERM it stops its loop and shuts its
        # kernels down (voila.app.Voila._handle_signal_stop, then stop()).
        self.proc.send_signal(signal.SIGTERM)


@pytest.fixture(scope="module")
def voila_server() -> Iterator[VoilaServer]:
    harness.require_chromium()
    base = Path(tempfile.mkdtemp(prefix="stagewidget-voila-"))
    server = VoilaServer(base)
    yield server
    server.close()
    shutil.rmtree(base, ignore_errors=True)


FOUR_ROWS = "() => document.querySelectorAll('.sw-run .sw-grid .sw-r').length >= 4"


@contextlib.contextmanager
def voila_page(server: VoilaServer, browser: Any, tmp_path: Path, stem: str, source: str,
               ready: str, query: str = "") -> Iterator[LabPage]:
    """Open notebook ``source`` in Voila at 1200 px; yield the page once ``ready`` holds."""
    name = server.copy_in(notebook(tmp_path, stem, source))
    page = LabPage(server, browser.new_page())
    try:
        page.page.set_viewport_size({"width": 1200, "height": 900})
        page.page.goto(server.notebook_url(name) + query)
        page.page.wait_for_function(ready, timeout=60_000, polling=50)
        yield page
    finally:
        page.page.close()


def test_voila_renders_the_final_view_of_a_run_that_ended_during_execution(
        voila_server: VoilaServer, browser: Any, tmp_path: Path) -> None:
    with voila_page(voila_server, browser, tmp_path, "finished", FINISHED,
                    FOUR_ROWS) as page:
        layout = page.page.evaluate(GRID, "body")
        assert_rows_drawn(layout)
        assert "frontends succeeded" in layout["names"][0], layout
        assert layout["styled"] == [100, 100, 100, 100], layout
        assert all(width > 0 for _, width in layout["fills"]), layout
        assert layout["buttons"] == [], layout  # no Cancel on a finished run
        assert "the run ended succeeded" in page.page.inner_text("body")
        page.screenshot("voila-finished")


def test_voila_dark_shows_the_failure_and_retry_runs_it_again(
        voila_server: VoilaServer, browser: Any, tmp_path: Path) -> None:
    with voila_page(voila_server, browser, tmp_path, "fails-once", FAILS_ONCE, FOUR_ROWS,
                    query="&theme=dark") as page:
        layout = page.page.evaluate(GRID, "body")
        assert_rows_drawn(layout)
        assert "frontends failed" in layout["names"][0], layout
        assert lightness(layout["colour"]) > 150, layout  # light text: the dark theme's
        assert layout["buttons"] == ["Retry"], layout
        page.page.locator(".sw-run summary", has_text="Error").click()
        trace = page.page.locator(".sw-run details pre", has_text="ValueError: bad batch")
        trace.wait_for()
        lines = trace.evaluate("(pre) => ({height: pre.clientHeight,"
                               " size: parseFloat(getComputedStyle(pre).fontSize),"
                               " count: pre.innerText.trim().split('\\n').length})")
        assert lines["height"] <= 1.5 * lines["size"] * lines["count"], lines  # not spaced out
        page.screenshot("voila-dark-failed")
        page.page.locator(".sw-run .widget-button", has_text="Retry").click()
        # the retry's view appears inside the first one, and its run succeeds
        page.page.wait_for_function(
            "() => Array.from(document.querySelectorAll('.sw-run .sw-run .sw-r > b'))"
            ".some(b => b.innerText.includes('frontends succeeded'))",
            timeout=60_000, polling=50)
        retried = page.page.evaluate(GRID, "body")
        assert_rows_drawn(retried)
        assert retried["styled"] == [100, 100, 100, 100], retried
        page.screenshot("voila-dark-retried")


def test_voila_follows_a_run_still_going_and_cancel_cancels_it(
        voila_server: VoilaServer, browser: Any, tmp_path: Path) -> None:
    # the notebook ends with the run held: the page is shown, then the view follows the
    # run through the kernel Voila keeps for the widgets
    held = ("() => Array.from(document.querySelectorAll('.sw-run .sw-r > small'))"
            ".some(s => s.innerText.includes('held at half way'))")
    with voila_page(voila_server, browser, tmp_path, "held", HELD, held) as page:
        layout = page.page.evaluate(GRID, "body")
        assert_rows_drawn(layout)
        assert "frontends running" in layout["names"][0], layout
        assert layout["buttons"] == ["Cancel"], layout
        page.screenshot("voila-running")
        page.page.locator(".sw-run .widget-button", has_text="Cancel").click()
        page.page.locator(".sw-run .sw-x", has_text="Cancelled: Retry resumes").wait_for()
        layout = page.page.evaluate(GRID, "body")
        assert "frontends cancelled" in layout["names"][0], layout
        assert layout["buttons"] == ["Retry"], layout
        page.screenshot("voila-cancelled")
