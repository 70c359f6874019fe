"""The Jupyter dashboard over a status-service store (Redis, SQLite) as well as the run
history: runs another process publishes are listed once, streamed and cancelled in
that process; a bad or unreachable store never hides the history."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_extension as ext
from conftest import WAIT_S
from pytest_jupyter.jupyter_server import *  # noqa: F403 (its fixtures, for this module only)
from servers import RedisServer, free_port
from traitlets.config import Config

from stagewidget.jupyter.shared import STORE_ENV, open_shared

OWNER = textwrap.dedent("""
    import itertools, sys, threading, time
    import stagewidget as sw
    from stagewidget.durable import history

    def train():
        for epoch in sw.track(itertools.count(), desc="epoch"):  # until cancelled
            sw.report(loss=1 / (epoch + 1))
            time.sleep(0.05)

    service = sw.serve(store=sys.argv[1], port=int(sys.argv[2]))
    training = threading.Event()
    run = sw.Pipeline("train-model", [train]).start(display=False)
    run.subscribe(lambda s: s.stages[0].done > 0 and training.set())
    assert training.wait(20) and history.flush(20)  # in the history with train running
    while service.registry.store.get(run.run_id) is None:  # and published to the store
        time.sleep(0.02)
    print(run.run_id, flush=True)
    print(run.wait(60).state.value, flush=True)
    service.stop()
""")


client, events, problem = ext.client, ext.events, ext.problem
base, run, token = ext.base, ext.run, ext.token  # its fixtures, for this module too
DOWN_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


redis_module = pytest.fixture(scope="module")(redis_server)  # shared by this module's tests
redis_own = pytest.fixture(redis_server)  # one test's own, to stop and start


@pytest.fixture(params=["redis", "sqlite"])
def store_url(request, tmp_path: Path) -> str:
    if request.param == "bouncing":
        return request.getfixturevalue("redis_own").url
    if request.param == "redis":
        import redis

        url = request.getfixturevalue("redis_module").url
        with redis.Redis.from_url(url) as client:
            client.flushdb()  # each test's runs alone
        return url
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture(autouse=True)
def dashboard_closed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Close the store the server's dashboard read (its listener thread ends with it)."""
    yield
    serverapp = request.node.funcargs.get("jp_serverapp")
    if serverapp is not None:
        serverapp.web_app.settings["stagewidget_dashboard"].close()


@pytest.fixture
def jp_base_url() -> str:
    return "/user/alice/"


@pytest.fixture
def jp_server_config(store_url: str) -> Config:
    return Config({"ServerApp": {"jpserver_extensions": {"stagewidget": True}},
                   "StagewidgetDashboard": {"store": store_url}})


@pytest.fixture
def recorded() -> bool:
    """Whether the owner records its runs in the history too (else only the store has them)."""
    return False


@pytest.fixture
def owner(home: Path, store_url: str, recorded: bool) -> Any:
    """A process serving its runs to the store (``sw.serve``), running 'train-model'
    until cancelled; its first line is the run id."""
    home.mkdir(exist_ok=True)
    env = {**os.environ, "STAGEWIDGET_HOME": str(home),
           "STAGEWIDGET_HISTORY": "1" if recorded else "0"}
    proc = subprocess.Popen([sys.executable, "-c", OWNER, store_url, str(free_port())],
                            env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.stderr.read()
    proc.run_id = run_id
    yield proc
    proc.kill()
    proc.communicate()


def test_a_store_run_is_listed_once_streamed_and_cancelled_in_its_process(
        home, run, base, token, owner) -> None:
    run_id = owner.run_id

    async def scenario() -> list[str]:
        async with client(token) as http:
            listing = (await http.get(base + "api/runs")).json()
            assert [r["run_id"] for r in listing["runs"]] == [run_id], listing
            assert listing["total"] == 1 and listing["runs"][0]["state"] == "running"
            assert (await http.get(base + f"api/runs/{run_id}")).json()["state"] == "running"
            seen: list[str] = []
            async with http.stream("GET", base + "api/events") as stream:
                async for name, data in events(stream):
                    if name == "comment" and data == "synced":
                        seen.append("synced")
                    if name != "status" or data["run_id"] != run_id:
                        continue
                    seen.append(data["state"])
                    if data["state"] == "cancelled":
                        return seen
                    if "synced" in seen and "asked" not in seen:  # a live change came
                        cancel = await http.delete(base + f"api/runs/{run_id}")
                        assert cancel.status_code == 202, cancel.text
                        seen.append("asked")
        raise AssertionError(seen)

    seen = run(scenario())
    assert seen[0] == "running" and "asked" in seen and seen[-1] == "cancelled"
    out, err = owner.communicate(timeout=WAIT_S)
    assert out.strip() == "cancelled", err  # the owning process cancelled it


@pytest.mark.parametrize(("store_url", "recorded"), [("redis", True)], indirect=["store_url"])
def test_a_run_in_the_history_and_the_store_shows_once(home, run, base, token, owner) -> None:
    async def scenario() -> None:
        async with client(token) as http:
            listing = (await http.get(base + "api/runs")).json()
            assert [r["run_id"] for r in listing["runs"]] == [owner.run_id], listing
            assert listing["total"] == 1
            retry = await http.post(base + f"api/runs/{owner.run_id}/retry")
            assert "only through the status service" in problem(retry, 409)["detail"]
            async with http.stream("GET", base + "api/events") as stream:
                async for name, data in events(stream):
                    if name == "comment" and data == "synced":
                        return
                    assert name != "status" or data["run_id"] == owner.run_id
                    assert name != "status" or data["state"] == "running"

    run(scenario())
    assert owner.poll() is None  # still running: it was not cancelled


@pytest.mark.parametrize("store_url", ["bouncing"], indirect=True)
def test_while_redis_is_down_store_runs_answer_503_and_the_stream_recovers_after(
        home, run, base, token, owner, redis_own) -> None:
    run_id = owner.run_id

    async def scenario() -> list[str]:
        seen: list[str] = []
        async with client(token) as http, http.stream("GET", base + "api/events") as stream:
            async for name, data in events(stream):
                if name != "status" or data["run_id"] != run_id:
                    continue
                seen.append(data["state"])
                if data["state"] == "cancelled":
                    return seen
                if "down" not in seen:
                    redis_own.stop()
                    seen.append("down")
                    down = await http.get(base + f"api/runs/{run_id}")
                    assert f"the run store {redis_own.url} is unavailable" in problem(
                        down, 503)["detail"]
                    assert (await http.get(base + "api/runs")).json()["runs"] == []
                    redis_own.start()  # empty: the owner's next write brings the run back
                    seen.append("up")
                elif "asked" not in seen:  # a status that came after Redis was back
                    if (await http.get(base + f"api/runs/{run_id}")).status_code != 200:
                        continue  # sent before the owner wrote it again: wait for that write
                    cancel = await http.delete(base + f"api/runs/{run_id}")
                    assert cancel.status_code == 202, cancel.text
                    seen.append("asked")
        raise AssertionError(seen)

    seen = run(scenario())
    assert seen[:4] == ["running", "down", "up", "running"] and seen[-1] == "cancelled"
    assert "asked" in seen
    out, err = owner.communicate(timeout=WAIT_S)
    assert out.strip() == "cancelled", err


@pytest.mark.parametrize("store_url", [DOWN_URL])
def test_with_the_store_down_the_history_is_served_and_store_reads_answer_503(
        home, run, base, token) -> None:
    import stagewidget as sw
    from stagewidget.durable import history

    run_id = sw.Pipeline("local", [lambda: 1]).start(display=False).wait(WAIT_S).run_id
    assert history.flush(WAIT_S)

    async def scenario() -> None:
        async with client(token) as http:
            listing = (await http.get(base + "api/runs")).json()
            assert [r["run_id"] for r in listing["runs"]] == [run_id]
            assert (await http.get(base + f"api/runs/{run_id}")).json()["state"] == "succeeded"
            unknown = await http.get(base + "api/runs/elsewhere")
            assert f"the run store {DOWN_URL} is unavailable" in problem(unknown, 503)["detail"]
            cancel = await http.delete(base + "api/runs/elsewhere")
            assert DOWN_URL in problem(cancel, 503)["detail"]

    run(scenario())


@pytest.mark.parametrize("value", ["memory", "redis:/nope", "postgres://x", 3])
def test_a_bad_store_setting_is_logged_naming_it_and_no_store_is_read(
        value, caplog) -> None:
    log = logging.getLogger("test.jupyter")
    config = Config({"StagewidgetDashboard": {"store": value}})
    with caplog.at_level(logging.ERROR, "test.jupyter"):
        assert open_shared(config, log, environ={}) is None
        assert open_shared(Config(), log, environ={STORE_ENV: str(value)}) is None
    first, second = (r.getMessage() for r in caplog.records)
    assert first.startswith(f"stagewidget dashboard: bad StagewidgetDashboard.store={value!r}")
    assert f"${STORE_ENV}=" in second and "showing the run history only" in second
    assert open_shared(Config(), log, environ={}) is None  # nothing set: nothing to read


def test_a_store_run_whose_owner_went_silent_reads_lost_as_the_service_says(tmp_path) -> None:
    from stagewidget.errors import InvalidTransition
    from stagewidget.jupyter.shared import SharedRuns
    from stagewidget.service.store import Record
    from stagewidget.service.stores import make_store

    store = make_store(f"sqlite:///{tmp_path / 'runs.db'}")
    status = '{"run_id": "r1", "state": "running", "current_stage": "train"}'
    gone = f"{socket.gethostname()}:{2**22 + 1}"  # beyond any pid: no such process
    store.put(Record("r1", "p", "running", 1.0, None, 100.0, gone, status), keep_s=60)
    try:
        shared = SharedRuns(store, "sqlite:///runs.db", clock=lambda: 105.0)
        assert shared.get("r1")["state"] == "running"  # silent 5 s: within the limit
        shared = SharedRuns(store, "sqlite:///runs.db", clock=lambda: 130.0)
        lost = shared.get("r1")
        assert lost["state"] == "lost" and lost["error"]["type"] == "stagewidget.RunLost"
        assert lost["error"]["message"] == (f"the process running it ({gone}) has written "
                                            "nothing for 30 s (limit 10 s); it probably died")
        assert lost["error"]["stage"] == "train"
        assert [s["state"] for s in shared.runs()] == ["lost"]
        with pytest.raises(InvalidTransition, match="already ended"):
            shared.cancel("r1")
    finally:
        store.close()


def test_a_store_given_on_the_command_line_is_read_as_its_text(caplog) -> None:
    from traitlets.config.loader import DeferredConfigString

    log = logging.getLogger("test.jupyter")
    config = Config({"StagewidgetDashboard": {"store": DeferredConfigString("postgres://x")}})
    with caplog.at_level(logging.ERROR, "test.jupyter"):
        assert open_shared(config, log, environ={}) is None
    assert "bad StagewidgetDashboard.store='postgres://x': unknown store" in caplog.text
