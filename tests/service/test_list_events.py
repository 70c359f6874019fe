"""GET /api/events: one Server-Sent Events stream of every change of every matching run."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import harness
import httpx
import pytest
import svc_pipelines
from conftest import WAIT_S
from harness import auth

from stagewidget.service import MemoryStore, Record, RunRegistry
from stagewidget.service.http import _Api
from stagewidget.service.list_events import ListStream

pytestmark = pytest.mark.integration

redis_server, store_kind, prefix = harness.redis_server, harness.store_kind, harness.prefix
make_service, service_process = harness.make_service, harness.service_process


def read_events(stream: httpx.Response, timeout: float = WAIT_S):
    """The stream's (event, JSON data) pairs; fails once ``timeout`` passed."""
    return harness.read_events(stream, timeout)


def gated_run(client: httpx.Client) -> tuple[str, str]:
    """Start a gated run; return its id and its gate's name."""
    gate = f"gate-{uuid.uuid4().hex[:8]}"
    reply = client.post("/api/pipelines/gated/runs", json={"gate": gate})
    assert reply.status_code == 202, reply.text
    return reply.json()["run_id"], gate


def test_a_run_started_after_the_stream_opened_appears_and_its_changes_follow(
        make_service, store_kind) -> None:
    # The stream is read from service a; runs start in b, another registry and store
    # object on the same store (Redis: pushed; SQLite: polled; memory: b is a).
    a = make_service(store_kind)
    b = make_service(store_kind, token=a.token) if store_kind != "memory" else a
    with httpx.Client(base_url=a.url, timeout=WAIT_S, headers=auth(a)) as reader, \
            httpx.Client(base_url=b.url, timeout=WAIT_S, headers=auth(b)) as writer:
        before, before_gate = gated_run(writer)
        with reader.stream("GET", "/api/events", params={"pipeline": "gated"}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = read_events(stream)
            kind, first = next(events)
            assert kind == "status" and first["run_id"] == before  # the runs there are
            # Headers came: the stream watches. A run of another pipeline ends first...
            other = writer.post("/api/pipelines/hello/runs", headers={"Prefer": "wait=20"})
            assert other.json()["state"] == "succeeded"
            new, new_gate = gated_run(writer)  # ...then a new matching run starts
            seen: list[dict] = []
            for _, data in events:
                seen.append(data)
                if data["run_id"] == new and data["state"] == "running":
                    svc_pipelines.gate(new_gate).set()
                if data["run_id"] == new and data["state"] == "succeeded":
                    break
    svc_pipelines.gate(before_gate).set()
    assert {data["pipeline"] for data in seen} == {"gated"}
    assert [d["state"] for d in seen if d["run_id"] == new][-1] == "succeeded"
    assert seen[-1]["result"] == new_gate and seen[-1]["stages"][0]["metrics"] == {
        "opened": True}


def test_a_state_filter_sends_matching_runs_and_once_more_when_one_leaves(make_service
                                                                           ) -> None:
    service = make_service("memory")
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        done = client.post("/api/pipelines/hello/runs", headers={"Prefer": "wait=20"})
        assert done.json()["state"] == "succeeded"
        with client.stream("GET", "/api/events", params={"state": "running"}) as stream:
            events = read_events(stream)
            run_id, gate = gated_run(client)
            _, data = next(events)  # not the succeeded run, nor the run while pending
            assert (data["run_id"], data["state"]) == (run_id, "running")
            svc_pipelines.gate(gate).set()
            states = []
            for _, data in events:
                assert data["run_id"] == run_id
                states.append(data["state"])
                if data["state"] != "running":
                    break
    assert states[-1] == "succeeded"  # the change that made it leave the filter


def test_more_than_six_runs_stay_live_on_one_stream(make_service) -> None:
    service = make_service("memory")
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        runs = dict(gated_run(client) for _ in range(8))
        ended: set[str] = set()
        with client.stream("GET", "/api/events", params={"pipeline": "gated"}) as stream:
            for gate in runs.values():
                svc_pipelines.gate(gate).set()
            for _, data in read_events(stream):
                if data["run_id"] in runs and data["state"] == "succeeded":
                    ended.add(data["run_id"])
                    if ended == set(runs):
                        break
    assert ended == set(runs)


def test_head_answers_headers_only_and_a_bad_filter_is_a_400_problem(make_service) -> None:
    service = make_service("memory")
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        head = client.head("/api/events", params={"pipeline": "gated"})
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"].startswith("text/event-stream")
        bad = client.get("/api/events", params={"state": "done"})
        assert bad.status_code == 400
        assert bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["detail"] == ("state must be one of pending, running, succeeded, "
                                        "failed, cancelled, lost (got 'done')")
        assert client.get("/api/events", headers={"Authorization": "Bearer x"}
                          ).status_code == 401


def test_a_slow_client_holds_only_the_latest_record_of_each_run() -> None:
    store = MemoryStore()
    registry = RunRegistry([], store)
    api = _Api(registry, token=None, max_body_bytes=1024, max_wait_s=1.0, ping_s=60.0,
               expose_tracebacks=False, expose_logs=False)

    now = time.time()

    def record(run_id: str, n: int) -> Record:
        return Record(run_id=run_id, pipeline="p", state="running", created_at=now,
                      finished_at=None, heartbeat_at=now + n / 1000, owner="elsewhere:1",
                      status_json=f'{{"run_id": "{run_id}", "state": "running", "n": {n}}}')

    async def scenario() -> tuple[int, list[str]]:
        stream = ListStream(api, None, None)
        await stream.open()
        events = stream.events()
        assert await anext(events) == ": synced\n\n"  # no runs yet
        writer = threading.Thread(target=lambda: [store.put(record(run_id, n), keep_s=60)
                                                  for n in range(1, 501)
                                                  for run_id in ("r1", "r2")])
        writer.start()  # 1000 writes while the client reads nothing
        await asyncio.to_thread(writer.join, WAIT_S)
        await asyncio.sleep(0)  # the loop takes the writes the store handed over
        pending = len(stream.pending)
        sent = [await anext(events), await anext(events)]
        await events.aclose()
        return pending, sent

    try:
        pending, sent = asyncio.run(scenario())
    finally:
        registry.close()
    assert pending == 2
    assert sorted(s.split("data: ")[1].strip() for s in sent) == [
        '{"run_id":"r1","state":"running","n":500}', '{"run_id":"r2","state":"running","n":500}']


def test_a_run_whose_process_was_killed_turns_lost_on_the_stream(request) -> None:
    # Nothing is written for a lost run: the stream finds it silent when it pings.
    service_process = request.getfixturevalue("service_process")
    owner = service_process("--lost-after-s", "1")
    run_id = owner.http.post("/api/pipelines/slow/runs",
                             json={"steps": 100_000, "step_s": 0.01}).json()["run_id"]
    watcher = service_process("--lost-after-s", "1")
    with watcher.http.stream("GET", "/api/events", params={"pipeline": "slow"}) as stream:
        events = read_events(stream)
        _, data = next(events)
        assert (data["run_id"], data["state"]) == (run_id, "running")
        owner.stop(kill=True)
        for _, data in events:
            if data["state"] != "running":
                break
    assert data["state"] == "lost" and data["error"]["type"] == "stagewidget.RunLost"
