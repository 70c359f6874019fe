"""The dashboard inside Jupyter Server: a real server (pytest-jupyter's fixtures) under
``/user/alice/``, reading the runs another process records in the run history.

The "kernel" is a plain Python process running a pipeline with the same
``STAGEWIDGET_HOME``, as every kernel records its runs (tests/jupyter/test_kernel.py
does it with a real kernel). Requests go over real HTTP (httpx on the server's loop), so
Jupyter's authentication, XSRF check and the event streams are exercised as a browser
meets them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import WAIT_S
from pytest_jupyter.jupyter_server import *  # noqa: F403 (its fixtures, for this module only)
from traitlets.config import Config

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
    run = sw.Pipeline("train-model", [load, train]).start(display=False)
    run.subscribe(lambda s: s.current == 1 and s.stages[1].done > 0 and training.set())
    assert training.wait(20) and history.flush(20)  # recorded with train running
    print(run.run_id, flush=True)
    print(run.wait(60).state.value, flush=True)
""")


@pytest.fixture
def jp_base_url() -> str:
    return "/user/alice/"


@pytest.fixture
def jp_server_config() -> Config:
    return Config({"ServerApp": {"jpserver_extensions": {"stagewidget": True}}})


@pytest.fixture
def run(jp_asyncio_loop) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """Run a coroutine on the server's loop (the server answers while it runs), for at
    most 2 * WAIT_S (a stream waiting for an event that never comes fails the test)."""
    return lambda scenario: jp_asyncio_loop.run_until_complete(
        asyncio.wait_for(scenario, 2 * WAIT_S))


@pytest.fixture
def base(http_server, jp_http_port) -> str:
    return f"http://127.0.0.1:{jp_http_port}/user/alice/stagewidget/"  # http_server: listening


@pytest.fixture
def token(jp_serverapp) -> str:
    return jp_serverapp.identity_provider.token


@pytest.fixture
def kernel_like(home: Path) -> Any:
    """A process running the pipeline 'train-model', held in its second stage until
    cancelled; its first line is the run id."""
    home.mkdir(exist_ok=True)
    env = {**os.environ, "STAGEWIDGET_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-c", KERNEL_LIKE], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.stderr.read()
    proc.run_id = run_id
    yield proc
    proc.kill()
    proc.communicate()


def client(token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"token {token}"} if token else {}
    return httpx.AsyncClient(headers=headers, timeout=WAIT_S)


async def events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """The stream's events as (name, data), comments as ("comment", text)."""
    name, data = "message", []
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield name, json.loads("\n".join(data))
            name, data = "message", []


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    return body


def test_a_recorded_run_is_listed_streamed_and_cancelled_in_its_process(
        run, base, token, kernel_like) -> None:
    run_id = kernel_like.run_id

    async def scenario() -> list[str]:
        async with client(token) as http:
            listing = (await http.get(base + "api/runs")).json()
            [listed] = [r for r in listing["runs"] if r["run_id"] == run_id]
            assert listed["state"] == "running" and listed["pipeline"] == "train-model"
            assert listed["url"] == f"/user/alice/stagewidget/api/runs/{run_id}"
            one = (await http.get(base + f"api/runs/{run_id}")).json()
            assert one["current_stage"] == "train" and one["stages"][1]["done"] > 0
            seen = []
            async with http.stream("GET", base + "api/events",
                                   params={"pipeline": "train-model"}) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                done = None
                async for name, data in events(stream):
                    seen.append(name if name != "status" else data["state"])
                    if name == "status" and data["run_id"] == run_id:
                        if done is None and "synced" in seen:  # a live change came
                            cancel = await http.delete(base + f"api/runs/{run_id}")
                            assert cancel.status_code == 202, cancel.text
                            assert cancel.json()["state"] == "running"
                            done = True
                        elif data["state"] == "cancelled":
                            return seen
                    if name == "comment" and data == "synced":
                        seen.append("synced")
        raise AssertionError(seen)

    seen = run(scenario())
    # the run as it was, the end of the first batch, live changes, then its end
    assert seen[0] == "running" and "synced" in seen and seen[-1] == "cancelled"
    out, err = kernel_like.communicate(timeout=WAIT_S)
    assert out.strip() == "cancelled", err  # the owning process cancelled it

    async def after() -> None:
        async with client(token) as http:
            final = (await http.get(base + f"api/runs/{run_id}")).json()
            assert final["state"] == "cancelled"
            assert final["stages"][1]["state"] == "cancelled"
            again = await http.delete(base + f"api/runs/{run_id}")
            assert "already ended (cancelled)" in problem(again, 409)["detail"]

    run(after())


def test_a_run_stream_ends_with_the_run(run, base, token, kernel_like) -> None:
    run_id = kernel_like.run_id

    async def scenario() -> list[tuple[str, Any]]:
        seen = []
        async with client(token) as http, \
                http.stream("GET", base + f"api/runs/{run_id}/events") as stream:
            async for name, data in events(stream):
                seen.append((name, data))
                if name == "status" and len(seen) == 1:
                    assert (await http.delete(base + f"api/runs/{run_id}")).status_code == 202
        return seen  # the server ended the stream

    seen = run(scenario())
    assert seen[0][1]["state"] == "running"
    assert seen[-2][1]["state"] == "cancelled" and seen[-1] == ("end", {"state": "cancelled"})
    # no stream open, no read going: the extension's database thread has ended (a plain
    # server extension is never told that its server stops)
    run(asyncio.sleep(0))
    for thread in threading.enumerate():
        if thread.name.startswith("stagewidget-jupyter"):
            thread.join(WAIT_S)
            assert not thread.is_alive()


def test_requests_without_jupyters_token_are_refused(run, base, kernel_like) -> None:
    async def scenario() -> None:
        async with client(None) as http:
            for method, path in [("GET", "api/runs"), ("GET", "api/session"),
                                 ("GET", f"api/runs/{kernel_like.run_id}"),
                                 ("GET", "api/events"),
                                 ("DELETE", f"api/runs/{kernel_like.run_id}"),
                                 ("POST", f"api/runs/{kernel_like.run_id}/retry")]:
                response = await http.request(method, base + path)
                assert response.status_code == 403, (method, path, response.text)
                assert "train-model" not in response.text  # no run data
            for path in ("", "runs/x", "static/favicon.svg"):  # to Jupyter's login page
                page = await http.get(base + path)
                assert page.status_code == 302
                assert page.headers["location"].startswith("/user/alice/login?next=")

    run(scenario())
    assert kernel_like.poll() is None  # still running: nothing was cancelled


def test_a_cookie_session_needs_jupyters_xsrf_token_to_cancel(
        run, base, token, kernel_like) -> None:
    run_id = kernel_like.run_id

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=WAIT_S) as browser:
            page = await browser.get(base, params={"token": token})  # Jupyter's login
            assert page.status_code == 200
            session = (await browser.get(base + "api/session")).json()
            assert session == {"token_required": False, "session": True, "login": False,
                               "csrf_token": session["csrf_token"],
                               "csrf_header": "X-XSRFToken"}
            refused = await browser.delete(base + f"api/runs/{run_id}")
            assert refused.status_code == 403 and kernel_like.poll() is None
            retry = await browser.post(base + f"api/runs/{run_id}/retry")
            assert retry.status_code == 403  # before the route's own 409
            cancel = await browser.delete(base + f"api/runs/{run_id}",
                                          headers={"X-XSRFToken": session["csrf_token"]})
            assert cancel.status_code == 202, cancel.text

    run(scenario())
    out, _ = kernel_like.communicate(timeout=WAIT_S)
    assert out.strip() == "cancelled"


def test_retry_unknown_runs_and_hostile_strings_get_json_problems(
        run, base, token, kernel_like) -> None:
    hostile = "<img src=x onerror=alert(1)>\u2028'\"\U0001f600"

    async def scenario() -> None:
        async with client(token) as http:
            retry = await http.post(base + f"api/runs/{kernel_like.run_id}/retry")
            assert "can be retried only in that kernel" in problem(retry, 409)["detail"]
            for method in ("GET", "DELETE"):
                missing = await http.request(method, base + "api/runs/no-such-run")
                assert "no run with id 'no-such-run'" in problem(missing, 404)["detail"]
            for path in (f"api/runs/{quote(hostile)}", f"api/runs/{quote(hostile)}/events"):
                odd = await http.get(base + path)
                # JSON a browser does not sniff into HTML, the string given back whole
                assert odd.headers["x-content-type-options"] == "nosniff"
                assert f"no run with id {hostile!r}" in problem(odd, 404)["detail"]
                assert odd.text.isascii()
            bad = await http.get(base + "api/runs", params={"state": hostile})
            assert "state must be one of pending, running" in problem(bad, 400)["detail"]
            none = await http.get(base + "api/nothing/here")
            assert "no such API route" in problem(none, 404)["detail"]
            start = await http.post(base + "api/pipelines/train-model/runs", json={})
            assert "starts none" in problem(start, 404)["detail"]
            assert (await http.get(base + "api/pipelines")).json() == []

    run(scenario())


def test_the_page_and_its_files_are_served_under_the_base_url(run, base, token) -> None:
    async def scenario() -> None:
        async with client(token) as http:
            for path in ("", "runs/any-run-id"):
                page = await http.get(base + path)
                assert page.status_code == 200
                assert page.headers["content-type"].startswith("text/html")
                assert "default-src 'self'" in page.headers["content-security-policy"]
                assert "__BASE__" not in page.text
                assert '<meta name="stagewidget-base" content="/user/alice/stagewidget/">' \
                    in page.text
                assert 'src="/user/alice/stagewidget/static/app.js"' in page.text
            for name, kind in [("favicon.svg", "image/svg+xml"),
                               ("app.js", "text/javascript; charset=utf-8"),
                               ("app.css", "text/css; charset=utf-8")]:
                asset = await http.get(base + "static/" + name)
                assert asset.status_code == 200
                assert asset.headers["content-type"] == kind
            for path in ("static/..%2Fpages.py", "static/index.html", "static/nope.js"):
                assert (await http.get(base + path)).status_code == 404, path

    run(scenario())


def test_a_run_whose_process_died_turns_lost_in_the_stream(
        run, base, token, kernel_like) -> None:
    run_id = kernel_like.run_id

    async def scenario() -> list[str]:
        seen: list[str] = []
        async with client(token) as http, http.stream("GET", base + "api/events") as stream:
            async for name, data in events(stream):
                if name == "comment" and data == "synced" and not seen:
                    raise AssertionError("the running run was not in the first batch")
                if name != "status" or data["run_id"] != run_id:
                    continue
                seen.append(data["state"])
                if len(seen) == 1:
                    kernel_like.kill()  # a kernel killed: nobody records the run's end
                    kernel_like.wait()
                if data["state"] == "lost":
                    return seen
        raise AssertionError(seen)

    assert run(scenario())[-1] == "lost"

    async def after() -> None:
        async with client(token) as http:
            lost_run = (await http.get(base + f"api/runs/{run_id}")).json()
            assert lost_run["state"] == "lost"
            assert lost_run["error"]["type"] == "stagewidget.RunLost"
            assert "ended before the run did" in lost_run["error"]["message"]
            lost = await http.get(base + "api/runs", params={"state": "lost"})
            assert [r["run_id"] for r in lost.json()["runs"]] == [run_id]

    run(after())


def test_runs_are_paged_with_offset_total_and_next(home, run, base, token) -> None:
    import stagewidget as sw
    from stagewidget.durable import history

    ids = [sw.Pipeline("paged", [lambda: 1]).start(display=False).wait(WAIT_S).run_id
           for i in range(3)]
    assert history.flush(WAIT_S)
    newest_first = ids[::-1]

    async def scenario() -> None:
        async with client(token) as http:
            first = (await http.get(base + "api/runs", params={"limit": 2})).json()
            assert [r["run_id"] for r in first["runs"]] == newest_first[:2]
            assert (first["total"], first["offset"], first["limit"]) == (3, 0, 2)
            assert first["next"] == "/user/alice/stagewidget/api/runs?offset=2&limit=2"
            second = (await http.get(base + "api/runs?offset=2&limit=2")).json()
            assert [r["run_id"] for r in second["runs"]] == newest_first[2:]
            assert (second["total"], second["offset"], second["next"]) == (3, 2, None)
            beyond = (await http.get(base + "api/runs", params={"offset": 9})).json()
            assert (beyond["runs"], beyond["total"]) == ([], 3)
            bad = await http.get(base + "api/runs", params={"offset": "-1"})
            assert "offset must be an integer between 0 and" in problem(bad, 400)["detail"]

    run(scenario())
