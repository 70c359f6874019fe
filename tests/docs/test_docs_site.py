"""The documentation site: built strict by scripts/docs, read from disk in Chromium.

The module fixture runs the real build (Sphinx -W -n, myst-nb executing the tutorials, npm
ci of the vendored widget manager) into a temporary folder with this interpreter, then the
tests read the built pages. The tutorial page of 02-model-training is opened from disk in
Debian's Chromium: its saved widget view must render through the vendored ipywidgets HTML
manager, offline. Screenshot: test-artifacts/docs/.
"""

from __future__ import annotations

import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import stagewidget
from tests.browser.lab import CHROMIUM, CHROMIUM_ARGS, require_chromium

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "docs"
TUTORIAL = "tutorials/notebooks/02-model-training.html"


@pytest.fixture(scope="module")
def site() -> Iterator[Path]:
    """The site built by scripts/docs (strict) into a temporary folder."""
    pytest.importorskip("myst_nb", reason="the docs extra is not installed (scripts/test installs it)")
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed (node 20 and npm come with the machine)")
    work = Path(tempfile.mkdtemp(prefix="stagewidget-docs-"))
    # Its own home: the notebooks it executes must not add to the history and cache
    # that the nbval runs of the same notebooks in this session read.
    env = dict(os.environ, DOCS_PYTHON=sys.executable, DOCS_WORK=str(work / "work"),
               npm_config_cache=str(work / "npm-cache"), STAGEWIDGET_HOME=str(work / "home"))
    out = work / "html"
    build = subprocess.run([str(ROOT / "scripts" / "docs"), str(out)], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=280)
    if build.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        pytest.fail(f"scripts/docs exited {build.returncode}:\n{build.stdout[-3000:]}\n"
                    f"{build.stderr[-6000:]}")
    yield out
    shutil.rmtree(work, ignore_errors=True)


class _Refs(html.parser.HTMLParser):
    """The ids of a page and the addresses it loads (scripts, style sheets, images, frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.loads: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag in ("script", "img", "iframe") and values.get("src"):
            self.loads.append(str(values["src"]))
        if tag == "link" and values.get("rel") == "stylesheet" and values.get("href"):
            self.loads.append(str(values["href"]))


def _refs(page: Path) -> _Refs:
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def test_api_reference_has_an_anchor_for_every_public_name(site: Path) -> None:
    ids = _refs(site / "api.html").ids
    missing = [name for name in stagewidget.__all__
               if f"stagewidget.{name}" not in ids and f"module-stagewidget.{name}" not in ids]
    assert missing == []


def test_no_page_loads_anything_from_another_host(site: Path) -> None:
    remote = {str(page.relative_to(site)): url for page in site.rglob("*.html")
              for url in _refs(page).loads if re.match(r"(https?:)?//", url)}
    assert remote == {}


def test_benchmarks_page_shows_bench_results(site: Path) -> None:
    results = (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (\w+)$", results, flags=re.M)
    page = (site / "benchmarks.html").read_text(encoding="utf-8")
    assert sections and [name for name in sections if f'id="{name.replace("_", "-")}"' not in page] == []


def test_tutorial_view_renders_from_saved_state_offline(site: Path) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    page_path = site / TUTORIAL
    assert "application/vnd.jupyter.widget-state+json" in page_path.read_text(encoding="utf-8")
    requests: list[str] = []
    errors: list[str] = []
    profile = tempfile.mkdtemp(prefix="stagewidget-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900})
            page: Any = context.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_path.as_uri(), wait_until="load")
            view = page.locator(".sw-run").first  # drawn only by the widget manager
            view.wait_for(state="visible", timeout=30_000)
            widths = page.eval_on_selector_all(".sw-run .sw-r>i>i", "bars => bars.map(b => b.style.width)")
            text = page.inner_text("main")
            view.scroll_into_view_if_needed()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "02-model-training.png"))
            view.screenshot(path=str(SCREENSHOTS / "02-model-training-view.png"))
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert len(widths) == 6 and set(widths) == {"100%"}  # the run and its five stages
    assert "digits-mlp succeeded" in text
    assert "Error displaying widget" not in text
    assert [url for url in requests if not url.startswith("file://")] == []
    assert errors == []
