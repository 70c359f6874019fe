"""Several processes sharing one Redis, and the faults they must survive; one run in every
store gives the same JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid

import harness
import httpx
import pytest
import svc_pipelines
from conftest import WAIT_S
from harness import HERE, RedisServer, auth, read_events, wait_until

from stagewidget.service import MemoryStore, Record, RunRegistry, Service
from stagewidget.service.redis_store import RedisStore
from stagewidget.service.sqlite_store import SQLiteStore

pytestmark = pytest.mark.integration

redis_server, prefix, make_service = harness.redis_server, harness.prefix, harness.make_service
service_process, sqlite_process = harness.service_process, harness.sqlite_process


@pytest.mark.parametrize("processes", ["service_process", "sqlite_process"],
                         ids=["redis", "sqlite"])
def test_a_run_started_through_one_process_is_read_streamed_and_cancelled_through_another(
        processes, request) -> None:
    # Redis publishes every write; SQLite is polled (so two changes, not the first read)
    service_process = request.getfixturevalue(processes)
    a, b = service_process(), service_process()
    run_id = a.http.post("/api/pipelines/slow/runs",
                         json={"steps": 2000, "step_s": 0.01}).json()["run_id"]
    seen = b.http.get(f"/api/runs/{run_id}")
    assert seen.status_code == 200 and seen.json()["pipeline"] == "slow"
    progress: list[int] = []
    with b.http.stream("GET", f"/api/runs/{run_id}/events") as stream:
        for kind, data in read_events(stream):
            if kind == "status" and data["stages"][0]["done"] > 0:
                progress.append(data["stages"][0]["done"])
            if len(progress) == 2:
                assert b.http.delete(f"/api/runs/{run_id}").status_code == 202
                break
    assert progress[0] < progress[1]
    wait_until(lambda: a.http.get(f"/api/runs/{run_id}").json()["state"] == "cancelled",
               what="the owner to cancel the run")
    final = b.http.get(f"/api/runs/{run_id}").json()
    assert final["state"] == "cancelled" and 0 < final["stages"][0]["done"] < 2000
    assert a.http.get(f"/api/runs/{run_id}").json() == final


def test_a_run_whose_process_was_killed_is_reported_lost(service_process, make_service
                                                         ) -> None:
    owner = service_process("--lost-after-s", "1")
    run_id = owner.http.post("/api/pipelines/slow/runs",
                             json={"steps": 100_000, "step_s": 0.01}).json()["run_id"]
    watcher = service_process("--lost-after-s", "1")
    assert watcher.http.get(f"/api/runs/{run_id}").json()["state"] == "running"
    owner.stop(kill=True)
    lost = wait_until(lambda: (r := watcher.http.get(f"/api/runs/{run_id}").json())["state"]
                      == "lost" and r, what="the run to be reported lost")
    assert lost["error"]["type"] == "stagewidget.RunLost"
    assert f":{owner.proc.pid})" in lost["error"]["message"]
    assert [r["run_id"] for r in watcher.http.get(
        "/api/runs", params={"state": "lost"}).json()["runs"]] == [run_id]
    with watcher.http.stream("GET", f"/api/runs/{run_id}/events") as stream:
        assert [k for k, _ in read_events(stream)] == ["status", "end"]
    assert watcher.http.delete(f"/api/runs/{run_id}").status_code == 409


def test_finished_runs_stay_readable_after_the_service_restarts(service_process) -> None:
    first = service_process()
    body = first.http.post("/api/pipelines/square/runs", json={"n": 100},
                           headers={"Prefer": "wait=20"}).json()
    assert body["state"] == "succeeded"
    first.stop()
    second = service_process()
    assert second.http.get(f"/api/runs/{body['run_id']}").json() == body


def test_with_redis_down_the_run_completes_503s_meanwhile_and_recovers() -> None:
    redis = RedisServer()  # its own server: this test stops it
    redis.start()
    try:
        service = Service(svc_pipelines.PIPELINES, port=0, redis=redis.url).start()
        gate = f"gate-{uuid.uuid4().hex[:8]}"
        with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
            run_id = client.post("/api/pipelines/gated/runs", json={"gate": gate}).json()[
                "run_id"]
            redis.stop()
            down = client.get(f"/api/runs/{run_id}")
            assert down.status_code == 503
            assert down.headers["content-type"] == "application/problem+json"
            assert down.headers["retry-after"] == "1"
            assert "Redis at redis://127.0.0.1" in down.json()["detail"]
            assert client.get("/api/health").status_code == 503
            assert client.post("/api/pipelines/square/runs", json={"n": 1}).status_code == 503
            run = service.registry.local_run(run_id)
            svc_pipelines.gate(gate).set()
            assert run.wait(WAIT_S).state.value == "succeeded"  # the store is not in its way
            redis.start()  # empty: no persistence
            final = wait_until(lambda: (r := client.get(f"/api/runs/{run_id}")).status_code
                               == 200 and r.json(), what="the final status to be written")
            assert final["state"] == "succeeded" and final["result"] == gate
            assert client.get("/api/health").status_code == 200
        service.stop()
    finally:
        redis.stop()


def test_memory_redis_and_sqlite_stores_give_identical_json(redis_server, prefix, tmp_path
                                                            ) -> None:
    registries = [RunRegistry(store=MemoryStore(), adopt=True),
                  RunRegistry(store=RedisStore(redis_server.url, prefix=prefix), adopt=True),
                  RunRegistry(store=SQLiteStore(tmp_path / "runs.db"), adopt=True)]
    try:
        run = svc_pipelines.fails.start({"row": 2}, display=False)
        run.wait(WAIT_S)
        done = [threading.Event() for _ in registries]
        for registry, event in zip(registries, done):
            registry.when_recorded_done(run.run_id, event.set)
        assert all(event.wait(WAIT_S) for event in done)
        memory, *others = [json.dumps(registry.get(run.run_id)) for registry in registries]
        assert others == [memory, memory]
        assert json.loads(memory)["state"] == "failed"
        assert [registry.list().runs for registry in registries[1:]] \
            == [registries[0].list().runs] * 2
    finally:
        for registry in registries:
            registry.close()
            registry.store.close()


def test_every_redis_key_has_an_expiry(redis_server, make_service, prefix) -> None:
    service = make_service("redis")
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        client.post("/api/pipelines/square/runs", json={"n": 5}, headers={"Prefer": "wait=20"})
        client.post("/api/pipelines/fails/runs", json={}, headers={"Idempotency-Key": "k1"})
        gate = f"gate-{uuid.uuid4().hex[:8]}"
        client.post("/api/pipelines/gated/runs", json={"gate": gate})
        keys = list(redis_server.client().scan_iter(f"{prefix}:*"))
        assert {k.split(":")[1] for k in keys} == {"run", "runs", "claim"}
        ttls = {k: redis_server.client().pttl(k) for k in keys}
        assert all(ttl > 0 for ttl in ttls.values()), ttls
        svc_pipelines.gate(gate).set()


def test_the_sweep_survives_a_damaged_record(redis_server, prefix) -> None:
    store = RedisStore(redis_server.url, prefix=prefix)
    registry = RunRegistry(store=store, max_finished=1, sweep_s=60)
    try:
        redis = redis_server.client()
        redis.hset(f"{prefix}:run:broken", mapping={"run_id": "broken", "state": "oops"})
        redis.zadd(f"{prefix}:runs", {"broken": 1.0})
        redis.expire(f"{prefix}:run:broken", 60)
        for n in range(3):
            store.put(Record(f"r{n}", "square", "succeeded", float(n), float(n), float(n),
                             "test", "{}"), keep_s=60)
        assert registry.sweep() == 2
        assert [r.run_id for r in store.records()] == ["r2"]
    finally:
        registry.close()
        store.close()


def test_serve_refuses_to_listen_beyond_loopback_without_a_token() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stagewidget", "serve", "svc_pipelines:PIPELINES",
         "--host", "0.0.0.0", "--no-token"], cwd=HERE, capture_output=True, text=True,
        timeout=WAIT_S)
    assert done.returncode == 2
    assert "refusing to listen on '0.0.0.0' without a token" in done.stderr


def test_a_cancel_published_while_the_owner_was_not_listening_reaches_it_at_its_next_write(
        redis_server, prefix) -> None:
    # As after a Redis restart: the owner's listener resubscribes later than it writes.
    owner, other = (RedisStore(redis_server.url, prefix=prefix) for _ in range(2))
    try:
        record = Record("r1", "p", "running", 1.0, None, 1.0, "h:1", "{}")
        owner.put(record, keep_s=60)
        other.request_cancel("r1")  # published to nobody: the owner is not subscribed yet
        asked: list[str] = []
        owner.on_cancel_request(asked.append)
        owner.put(record, keep_s=60)  # its next heartbeat takes the flag
        assert asked == ["r1"]
        owner.put(record, keep_s=60)  # taken once
        other.request_cancel("r1")
        owner.put(Record("r1", "p", "cancelled", 1.0, 2.0, 2.0, "h:1", "{}"), keep_s=60)
        with redis_server.client() as client:  # an ended run's flag goes with its end
            assert client.exists(f"{prefix}:cancel:r1") == 0
    finally:
        owner.close()
        other.close()
