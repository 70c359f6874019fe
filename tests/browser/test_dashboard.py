"""The status service's dashboard page in Debian's headless Chromium, against a real
``python -m stagewidget serve`` process: the login and what it hides, the live list (one
event stream, more than six runs at once), Cancel and Retry, a failed run's error, the
start form and the service's refusals, the run page, a foreign page on another 127.0.0.1
port (refused: Origin and CSRF checks), the token in no URL and no log line, no console
errors. Screenshots (desktop and phone width, light and dark) go to
test-artifacts/dashboard/.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from lab import CHROMIUM, CHROMIUM_ARGS, ROOT, require_chromium
from servers import free_port

pytestmark = pytest.mark.integration

WAIT_S = 20.0
WAIT_MS = WAIT_S * 1000
SHOTS = ROOT / "test-artifacts" / "dashboard"
PIPELINES = "tests.browser.dash_pipelines:PIPELINES"
FAILED_LOAD = re.compile(r"^Failed to load resource: the server responded with a status of "
                         r"(\d{3})")


class DashboardService:
    """``python -m stagewidget serve`` of the dashboard pipelines, its output in a file."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_urlsafe(24)
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        env = dict(os.environ, STAGEWIDGET_TOKEN=self.token)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stagewidget", "serve", PIPELINES, "--port",
             str(self.port), "--max-running", "64", "--drain-s", "0",
             "--expose-tracebacks", "--expose-logs"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.url, timeout=WAIT_S,
                                 headers={"Authorization": f"Bearer {self.token}"})
        self.wait_until(self._healthy, "the service to answer")

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, self.output()
        try:
            return self.http.get("/api/health").status_code == 200
        except httpx.TransportError:
            return False

    @staticmethod
    def wait_until(predicate: Any, what: str) -> Any:
        """Poll ``predicate`` (another process's state: it cannot signal this one)."""
        deadline = time.monotonic() + WAIT_S
        while not (value := predicate()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)
        return value

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def start(self, pipeline: str, data: Any = None) -> str:
        reply = self.http.post(f"/api/pipelines/{pipeline}/runs",
                               **({} if data is None else {"json": data}))
        assert reply.status_code == 202, reply.text
        return str(reply.json()["run_id"])

    def status(self, run_id: str) -> dict[str, Any]:
        reply = self.http.get(f"/api/runs/{run_id}")
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def cancel_all(self) -> None:
        for run in self.http.get("/api/runs", params={"limit": 500}).json()["runs"]:
            if run["state"] in ("pending", "running"):
                self.http.delete(f"/api/runs/{run['run_id']}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(WAIT_S)
        self.http.close()
        self._log.close()


class Watch:
    """Every request the browser made, its console errors and page errors."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.errors: list[str] = []

    def attach(self, context: Any) -> None:
        context.on("request", lambda request: self.urls.append(request.url))
        context.on("console", lambda message: message.type == "error"
                   and self.errors.append(message.text))
        context.on("weberror", lambda error: self.errors.append(f"page error: {error.error}"))

    def assert_clean(self, *statuses: int) -> None:
        """No console or page error since the last call but failed loads answered with
        one of ``statuses`` (Chromium logs each refused request; the test caused them)."""
        errors, self.errors = self.errors, []
        unexpected = [e for e in errors if not ((m := FAILED_LOAD.match(e))
                                               and int(m.group(1)) in statuses)]
        assert not unexpected, unexpected


@pytest.fixture(scope="module")
def service() -> Iterator[DashboardService]:
    require_chromium()
    running = DashboardService()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def watch() -> Watch:
    return Watch()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    # module scope: Playwright's sync API keeps an event loop running in this thread
    # until it stops, which would break later tests that call asyncio.run()
    from playwright.sync_api import sync_playwright

    require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def context(chromium: Any, watch: Watch) -> Iterator[Any]:
    """The module's browser context (its cookies: the session once logged in)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    watch.attach(context)
    yield context
    context.close()


@pytest.fixture(scope="module")
def page(context: Any, service: DashboardService, watch: Watch) -> Iterator[Any]:
    """A tab of the dashboard, logged in through its form."""
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    tab.goto(service.url + "/")
    log_in(tab, service.token)
    yield tab
    tab.close()


@pytest.fixture(autouse=True)
def _quiet_service(request: Any) -> Iterator[None]:
    yield
    if "service" in request.fixturenames:  # leave no run eating the 2 cores
        request.getfixturevalue("service").cancel_all()


def log_in(tab: Any, token: str) -> None:
    tab.wait_for_selector("#login", state="visible")
    tab.fill("#login input[name=token]", token)
    tab.click("#login button[type=submit]")
    tab.wait_for_selector("#list-view", state="visible")
    tab.wait_for_selector("#conn[data-state=live]")


def row(run_id: str) -> str:
    return f'#runs [data-run-id="{run_id}"]'


def widths(tab: Any, run_ids: list[str], stage: int) -> list[float]:
    return list(tab.evaluate("""([ids, stage]) => ids.map((id) => {
        const fill = document.querySelector(
          `#runs [data-run-id="${id}"] .bar[data-stage="${stage}"] .bar-fill`);
        return fill ? parseFloat(fill.style.width) : -1;
      })""", [run_ids, stage]))


def screenshot(tab: Any, name: str, *, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


# -- tests -------------------------------------------------------------------------------

def test_without_login_the_page_shows_the_login_and_no_run_data(
        chromium: Any, service: DashboardService, watch: Watch) -> None:
    run_id = service.start("fails", {"row": 7})
    context = chromium.new_context(viewport={"width": 375, "height": 740})
    watch.attach(context)
    try:
        tab = context.new_page()
        tab.set_default_timeout(WAIT_MS)
        asked: list[str] = []
        tab.on("request", lambda request: asked.append(request.url))
        tab.goto(service.url + f"/runs/{run_id}")
        tab.wait_for_selector("#login", state="visible")
        assert tab.is_hidden("#run-view") and tab.is_hidden("#list-view")
        assert run_id not in tab.content() and "row 7" not in tab.content()
        paths = {url.removeprefix(service.url) for url in asked}
        # the page, its files, and the one question asked without a session
        assert {path for path in paths if not path.startswith("/static/")} == {
            f"/runs/{run_id}", "/api/session"}
        assert {"/static/app.js", "/static/app.css"} <= paths
        # a wrong token: the service's problem detail, still no data
        tab.fill("#login input[name=token]", "not-the-token")
        tab.click("#login button[type=submit]")
        tab.wait_for_selector("#login-problem:not([hidden])")
        assert tab.text_content("#login-problem") == "the token is not this service's token"
        assert run_id not in tab.content()
        # the right one, by keyboard: the run page fills in; logging out empties it again
        tab.fill("#login input[name=token]", service.token)
        tab.press("#login input[name=token]", "Enter")
        tab.wait_for_selector('#run[data-state="failed"] .run-error:not([hidden])')
        assert "ValueError: row 7 is malformed" in tab.text_content("#run .run-error")
        tab.click("#logout")
        tab.wait_for_selector("#login", state="visible")
        assert run_id not in tab.content() and "row 7" not in tab.content()
        assert tab.evaluate("() => fetch('/api/runs').then(r => r.status)") == 401
    finally:
        context.close()
    watch.assert_clean(401)


def test_runs_started_over_http_appear_live_and_more_than_six_keep_moving(
        page: Any, service: DashboardService, watch: Watch) -> None:
    run_ids = [service.start("train", {"steps": 400, "step_s": 0.05}) for _ in range(8)]
    for run_id in run_ids:
        page.wait_for_selector(f'{row(run_id)}[data-state="running"] .bar[data-stage="1"]')
    page.wait_for_function("(ids) => ids.every((id) => parseFloat(document.querySelector("
                           "`#runs [data-run-id='${id}'] .bar[data-stage='1'] .bar-fill`)"
                           ".style.width) > 0)", arg=run_ids)
    before = widths(page, run_ids, 1)
    # every row moves again: eight runs over one stream (six is the browser's limit per
    # host for separate connections)
    page.wait_for_function("""([ids, before]) => ids.every((id, i) => parseFloat(
        document.querySelector(`#runs [data-run-id='${id}'] .bar[data-stage='1'] .bar-fill`)
        .style.width) > before[i])""", arg=[run_ids, before])
    assert widths(page, run_ids, 0) == [100.0] * 8  # the first stage is done
    first = page.locator(row(run_ids[0]))
    assert first.get_attribute("data-pipeline") == "train"
    assert first.locator(".eta").text_content().startswith("ETA ")
    page.wait_for_function("(id) => document.querySelector(`#runs [data-run-id='${id}'] "
                           ".metrics-text`)?.textContent.includes('loss')", arg=run_ids[0])
    event_streams = [url for url in watch.urls if url.endswith("/api/events")]
    assert len(event_streams) == 1, event_streams  # since the login
    assert page.get_attribute("#conn", "data-state") == "live"
    watch.assert_clean()


def test_the_list_reconnects_when_its_stream_breaks(
        page: Any, context: Any, service: DashboardService, watch: Watch) -> None:
    with _Relay(service.port) as relay:  # the same site: the session cookie goes along
        page.goto(relay.url + "/")
        page.wait_for_selector("#conn[data-state=live]")
        streams = len([url for url in watch.urls if url.startswith(relay.url + "/api/events")])
        relay.drop()  # the service, or a proxy on the way, went away
        page.wait_for_selector("#conn[data-state=reconnecting]")
        started = service.start("hello")
        page.wait_for_selector(f'{row(started)}[data-state="succeeded"]')  # heard again
        assert page.get_attribute("#conn", "data-state") == "live"
        assert len([url for url in watch.urls
                    if url.startswith(relay.url + "/api/events")]) == streams + 1
        # the browser offline: said at once; back online, live again
        context.set_offline(True)
        try:
            page.wait_for_selector("#conn[data-state=offline]")
        finally:
            context.set_offline(False)
        page.wait_for_selector("#conn[data-state=live]")
        page.goto(service.url + "/")
    cut = "Failed to load resource: net::ERR_INCOMPLETE_CHUNKED_ENCODING"
    assert watch.errors.count(cut) == 1  # the stream the relay cut, logged by Chromium
    watch.errors.remove(cut)
    watch.assert_clean()


def test_the_cancel_button_cancels_the_run(page: Any, service: DashboardService,
                                            watch: Watch) -> None:
    run_id = service.start("train", {"steps": 100_000, "step_s": 0.05})
    page.click(f'{row(run_id)}[data-state="running"] button[data-action="cancel"]')
    page.wait_for_selector(f'{row(run_id)}[data-state="cancelled"]')
    assert service.status(run_id)["state"] == "cancelled"
    assert page.is_hidden(f'{row(run_id)} button[data-action="cancel"]')
    assert page.is_visible(f'{row(run_id)} button[data-action="retry"]')
    watch.assert_clean()


def test_a_failed_run_shows_its_error_as_text_and_retry_starts_a_new_run(
        page: Any, service: DashboardService, watch: Watch) -> None:
    run_id = service.start("fails", {"row": 5})
    error = page.locator(f'{row(run_id)}[data-state="failed"] .run-error')
    error.wait_for()
    assert error.text_content() == \
        "ValueError: row 5 is malformed: <b>not bold</b> (stage parse)"
    assert page.locator(f"{row(run_id)} b").count() == 0  # text, never HTML
    page.click(f'{row(run_id)} button[data-action="retry"]')
    retried = service.wait_until(lambda: [
        run for run in service.http.get("/api/runs").json()["runs"]
        if run["retry_of"] == run_id], "the retried run")
    page.wait_for_selector(f'{row(retried[0]["run_id"])}[data-state="failed"]')
    watch.assert_clean()


def test_the_start_form_starts_a_run_and_shows_the_services_refusals(
        page: Any, service: DashboardService, watch: Watch) -> None:
    page.goto(service.url + "/")
    page.click("#start summary")
    form = page.locator("#start-form")
    form.locator("select[name=pipeline]").select_option("train")
    # bad JSON: the page says so at once, and the service's detail shows on submit
    form.locator("textarea[name=input]").fill('{"steps": 3,')
    assert "not valid JSON" in page.text_content("#start-check")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#start-problem:not([hidden])")
    assert page.text_content("#start-problem").startswith("the body is not valid JSON:")
    # JSON of the wrong type for the pipeline's input: the schema's top level, then 422
    form.locator("textarea[name=input]").fill("[1, 2]")
    assert "takes a JSON object" in page.text_content("#start-check")
    form.locator("button[type=submit]").click()
    page.wait_for_function("() => !document.querySelector('#start-problem')"
                           ".textContent.startsWith('the body is not valid JSON')")
    assert "object" in page.text_content("#start-problem")
    assert page.url == service.url + "/"  # nothing started
    # good input: the run's page, which follows the run to its end
    form.locator("textarea[name=input]").fill('{"steps": 40, "step_s": 0.02}')
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    run_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector(f'#run[data-run-id="{run_id}"][data-state="running"]')
    page.wait_for_selector('#run[data-state="succeeded"]')
    assert service.status(run_id)["state"] == "succeeded"
    assert page.locator("#stages tbody tr").count() == 2
    assert page.text_content("#stages tbody tr:nth-child(2) td:nth-child(4)") == "40 / 40"
    assert page.locator("#metrics-chart polyline").count() == 2  # loss and accuracy
    assert '"steps": 40' in page.text_content("#run .result")
    watch.assert_clean(400, 422)


def test_the_run_page_cancels_and_shows_an_error(page: Any, service: DashboardService,
                                                 watch: Watch) -> None:
    run_id = service.start("train", {"steps": 100_000, "step_s": 0.05})
    page.goto(f"{service.url}/runs/{run_id}")
    page.wait_for_selector('#run[data-state="running"] #stages .bar[data-stage="1"]')
    page.click('#run button[data-action="cancel"]')
    page.wait_for_selector('#run[data-state="cancelled"]')
    assert service.status(run_id)["state"] == "cancelled"
    failed = service.start("fails", {"row": 9})
    page.goto(f"{service.url}/runs/{failed}")
    page.wait_for_selector('#run[data-state="failed"] .run-error:not([hidden])')
    assert page.text_content("#run .run-error strong") == \
        "ValueError: row 9 is malformed: <b>not bold</b> (stage parse)"
    traceback = page.text_content("#run .run-error pre")
    assert "Traceback" in traceback and "dash_pipelines.py" in traceback
    assert "parsing row 9" in page.text_content("#logs")
    assert page.locator("#run b").count() == 0
    page.click('#run button[data-action="retry"]')  # the new run's page
    page.wait_for_function("(id) => { const run = document.querySelector('#run');"
                           " return run.dataset.runId !== id && run.dataset.state"
                           " === 'failed'; }", arg=failed)
    retried = page.get_attribute("#run", "data-run-id")
    assert service.status(retried)["retry_of"] == failed
    watch.assert_clean()


def test_filters_are_kept_in_the_url_and_narrow_the_list(page: Any, service: DashboardService,
                                                         watch: Watch) -> None:
    done = service.start("hello")
    page.goto(service.url + "/")
    page.wait_for_selector(f'{row(done)}[data-state="succeeded"]')
    page.select_option("#filter-state", "failed")
    page.wait_for_function("() => location.search === '?state=failed'")
    page.wait_for_selector(row(done), state="detached")
    assert page.locator("#runs [data-run-id]").count() > 0
    assert page.locator('#runs [data-run-id]:not([data-state="failed"])').count() == 0
    page.reload()
    page.wait_for_selector("#conn[data-state=live]")
    assert page.input_value("#filter-state") == "failed"
    page.select_option("#filter-state", "")
    page.select_option("#filter-pipeline", "hello")
    page.wait_for_function("() => location.search === '?pipeline=hello'")
    page.wait_for_selector(row(done))
    page.wait_for_function("() => Array.from(document.querySelectorAll('#runs [data-run-id]'))"
                           ".every((r) => r.dataset.pipeline === 'hello')")
    page.goto(service.url + "/")
    watch.assert_clean()


def test_a_page_on_another_port_cannot_cancel_nor_retry(
        page: Any, context: Any, service: DashboardService, watch: Watch) -> None:
    running = service.start("train", {"steps": 100_000, "step_s": 0.05})
    failed = service.start("fails", {})
    with _foreign_site() as foreign:
        tab = context.new_page()  # the same browser: it holds the dashboard's session cookie
        tab.set_default_timeout(WAIT_MS)
        tab.goto(foreign)
        outcomes = tab.evaluate("""async ([url, running, failed]) => {
            const tries = {
              cancel: () => fetch(`${url}/api/runs/${running}`,
                                  {method: "DELETE", credentials: "include"}),
              retry: () => fetch(`${url}/api/runs/${failed}/retry`,
                                 {method: "POST", credentials: "include", mode: "no-cors"}),
              logout: () => fetch(`${url}/api/logout`,
                                  {method: "POST", credentials: "include", mode: "no-cors"}),
            };
            const out = {};
            for (const [name, attempt] of Object.entries(tries)) {
              try { out[name] = (await attempt()).type; } catch (e) { out[name] = "blocked"; }
            }
            return out;
        }""", [service.url, running, failed])
        tab.close()
    assert outcomes == {"cancel": "blocked", "retry": "opaque", "logout": "opaque"}
    assert service.status(running)["state"] == "running"
    assert not [run for run in service.http.get("/api/runs").json()["runs"]
                if run["retry_of"] == failed]
    # the service answered 403 to what reached it; the DELETE never got past the preflight
    log = service.wait_until(lambda: "/api/logout HTTP/1.1\" 403" in service.output()
                             and service.output(), "the refusals in the access log")
    assert f'"POST /api/runs/{failed}/retry HTTP/1.1" 403' in log
    assert f'"DELETE /api/runs/{running} HTTP/1.1"' not in log
    assert f'"OPTIONS /api/runs/{running} HTTP/1.1" 401' in log
    # and the dashboard's own session still works
    page.goto(service.url + "/")
    page.wait_for_selector(f'{row(running)}[data-state="running"]')
    watch.errors = [e for e in watch.errors if "CORS policy" not in e
                    and "net::ERR_FAILED" not in e]
    watch.assert_clean(401, 403)


def test_markup_in_every_string_of_a_run_stays_text_and_the_csp_blocks_inline_script(
        page: Any, context: Any, service: DashboardService, watch: Watch) -> None:
    from urllib.parse import quote

    from dash_pipelines import XSS, hostile

    run_id = service.start(hostile.name, {})
    service.wait_until(lambda: service.status(run_id)["state"] == "failed", "the run to fail")
    tab = context.new_page()  # beside the logged-in page: the session cookie is shared
    tab.set_default_timeout(WAIT_MS)
    try:
        tab.goto(f"{service.url}/?pipeline=hostile")
        tab.wait_for_selector(f'{row(run_id)}[data-state="failed"] .run-error')
        assert XSS in tab.locator(row(run_id)).text_content()
        # filters that are markup, in the query string
        tab.goto(f"{service.url}/?pipeline={quote(XSS, safe='')}&state={quote(XSS, safe='')}")
        tab.wait_for_selector("#list-view:not([hidden])")
        # the run's page: its stages, progress labels, metrics, log and error
        tab.goto(f"{service.url}/runs/{run_id}")
        tab.wait_for_selector("#run-view:not([hidden])")
        tab.wait_for_function("(xss) => document.querySelector('#content').textContent"
                              ".split(xss).length > 4", arg=XSS)
        assert tab.locator("#content img, #content svg[onload]").count() == 0
        # a run id that is markup, in the page's path
        tab.goto(f"{service.url}/runs/{quote(XSS, safe='')}")
        tab.wait_for_selector("#run-view:not([hidden])")
        assert tab.evaluate("() => window.__xss") is None
        # and were markup ever inserted, the CSP would not run it: no inline script, no
        # inline event handler
        tab.evaluate("""() => {
            const script = document.createElement("script");
            script.textContent = "window.__inline = 1";
            document.body.append(script);
            const box = document.createElement("div");
            box.innerHTML = '<img id="probe" src="/static/favicon.svg" '
              + 'onload="window.__inline = 2">';
            document.body.append(box);
        }""")
        tab.wait_for_function("() => document.getElementById('probe').complete")
        assert tab.evaluate("() => [window.__xss, window.__inline]") == [None, None]
    finally:
        tab.close()
    watch.errors = [e for e in watch.errors if "Content Security Policy" not in e]
    watch.assert_clean(404)


def test_screenshots_desktop_and_phone_light_and_dark(page: Any, service: DashboardService,
                                                       watch: Watch) -> None:
    service.start("hello")
    service.start("fails", {"row": 12})
    running = service.start("train", {"steps": 400, "step_s": 0.05})
    page.goto(service.url + "/")
    page.wait_for_function("(id) => parseFloat(document.querySelector(`#runs [data-run-id="
                           "'${id}'] .bar[data-stage='1'] .bar-fill`)?.style.width) >= 4",
                           arg=running)
    page.wait_for_selector('#runs [data-state="failed"]')
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for name, size in (("desktop", (1280, 800)), ("phone", (375, 740))):
            page.set_viewport_size({"width": size[0], "height": size[1]})
            wide = page.evaluate("() => document.documentElement.scrollWidth")
            assert wide <= size[0], f"{name}: the page is {wide} px wide"
            screenshot(page, f"list-{name}-{scheme}", full_page=False)  # the newest
    page.goto(f"{service.url}/runs/{running}")
    page.wait_for_selector("#metrics-chart polyline")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for name, size in (("desktop", (1280, 800)), ("phone", (375, 740))):
            page.set_viewport_size({"width": size[0], "height": size[1]})
            wide = page.evaluate("() => document.documentElement.scrollWidth")
            assert wide <= size[0], f"{name}: the run page is {wide} px wide"
            screenshot(page, f"run-{name}-{scheme}")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="light")
    assert len(list(SHOTS.glob("*.png"))) >= 8
    watch.assert_clean()


def test_the_token_is_in_no_url_and_no_log_line(page: Any, service: DashboardService,
                                                 watch: Watch) -> None:
    assert watch.urls and not [url for url in watch.urls if service.token in url]
    output = service.output()
    assert '"GET /api/session HTTP/1.1" 200' in output  # the access log is on
    assert service.token not in output
    banner = f"open {service.url}/ and log in with the token you gave"
    assert banner in output


@contextlib.contextmanager
def _foreign_site() -> Iterator[str]:
    """A page on another port of 127.0.0.1 (the same site, another origin)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>elsewhere</title><p>another origin</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, name="foreign-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT_S)



class _Relay:
    """A TCP relay on another port to the service, whose connections can be cut."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()  # sockets: the accept thread adds, drop() cuts
        self.thread = threading.Thread(target=self._accept, name="relay", daemon=True)

    def __enter__(self) -> _Relay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept() (close would not)
        self.listener.close()
        self.drop()
        self.thread.join(WAIT_S)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed: the relay ends
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True,
                                 name="relay-pipe").start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def drop(self) -> None:
        """Cut every connection relayed so far."""
        with self.lock:
            cut, self.sockets = self.sockets, []
        for sock in cut:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
