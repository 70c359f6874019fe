"""The run registry and its stores, in this process: queueing, heartbeats, claims, damage."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace

import harness
import httpx
import pytest
import svc_pipelines
from conftest import WAIT_S, FakeClock
from harness import auth, wait_until

import stagewidget as sw
from stagewidget.service import MemoryStore, Record, RunRegistry
from stagewidget.status import RunStatus

redis_server, store_kind, prefix = harness.redis_server, harness.store_kind, harness.prefix
make_service = harness.make_service

PROBLEM = "application/problem+json"


def gate_name() -> str:
    return f"gate-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def registries() -> Iterator[list[RunRegistry]]:
    """Registries made by a test, closed after it (their gates opened first)."""
    made: list[RunRegistry] = []
    yield made
    for registry in made:
        registry.close()


def start(client: httpx.Client, pipeline: str, data=None, **headers) -> httpx.Response:
    return client.post(f"/api/pipelines/{pipeline}/runs", json=data, headers=headers)


def status(client: httpx.Client, run_id: str) -> dict:
    return client.get(f"/api/runs/{run_id}").json()


def recorded_done(registry: RunRegistry, run_id: str) -> None:
    done = threading.Event()
    registry.when_recorded_done(run_id, done.set)
    assert done.wait(WAIT_S), f"run {run_id} was never recorded as finished"


# -- item 10: claims in the memory store ------------------------------------------------
class CountingTime(float):
    """A time whose comparisons are counted (it is the right operand of every one)."""

    compared = 0

    def _count(self, other: object, result: bool) -> bool:
        CountingTime.compared += 1
        return result

    def __lt__(self, other):  # type: ignore[override]
        return self._count(other, float(self) < other)

    def __le__(self, other):  # type: ignore[override]
        return self._count(other, float(self) <= other)

    def __gt__(self, other):  # type: ignore[override]
        return self._count(other, float(self) > other)

    def __ge__(self, other):  # type: ignore[override]
        return self._count(other, float(self) >= other)


def test_a_claim_compares_a_bounded_number_of_expiries_whatever_the_live_keys() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=lambda: CountingTime(clock.now))
    for n in range(10_000):
        assert store.claim(f"idem:p:{n}", f"run-{n} fp", 600.0) is None
    CountingTime.compared = 0
    assert store.claim("idem:p:one-more", "run-x fp", 600.0) is None
    assert CountingTime.compared <= 5, f"{CountingTime.compared} expiries compared"


def test_expired_claims_are_dropped_from_the_memory_store() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for n in range(100):
        store.claim(f"idem:p:{n}", f"run-{n} fp", 10.0)
    store.claim("idem:p:late", "run-late fp", 30.0)
    clock.tick(11)
    assert store.claimed("idem:p:1") is None
    assert store.claim("idem:p:new", "run-new fp", 10.0) is None
    assert store.claim_count() == 2  # the late one and the new one
    assert store.claim("idem:p:1", "run-again fp", 10.0) is None


def test_a_claim_lives_as_long_as_the_record_of_its_run_and_goes_with_it() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.claim("idem:p:k", "r1 fp", 10.0)
    record = Record("r1", "p", "running", clock.now, None, clock.now, "h:1", "{}", claim="k")
    store.put(replace(record, claim="idem:p:k"), keep_s=100.0)
    clock.tick(50)
    store.claim("idem:p:other", "r2 fp", 10.0)  # drops what expired by now
    assert store.claimed("idem:p:k") == "r1 fp"
    store.remove(["r1"])
    assert store.claimed("idem:p:k") is None


def test_removing_a_duplicate_run_keeps_the_claim_of_the_first() -> None:
    store = MemoryStore()
    store.claim("idem:p:k", "r1 fp", 10.0)
    duplicate = Record("r2", "p", "pending", 1.0, None, 1.0, "h:1", "{}", claim="idem:p:k")
    store.put(duplicate, keep_s=10.0)
    store.remove(["r2"])
    assert store.claimed("idem:p:k") == "r1 fp"


# -- item 12: a replayed key whose run is gone starts a new run -------------------------
def test_an_idempotency_key_replayed_after_its_run_was_swept_starts_a_new_run(
        make_service, store_kind) -> None:
    service = make_service(store_kind, max_finished=1, sweep_s=3600)
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        key = {"Idempotency-Key": f"order-{uuid.uuid4().hex[:8]}", "Prefer": "wait=20"}
        first = start(client, "square", {"n": 3}, **key)
        assert first.status_code == 200
        first_id = first.json()["run_id"]
        assert start(client, "square", {"n": 4}, Prefer="wait=20").status_code == 200
        assert service.registry.sweep() == 1
        assert client.get(f"/api/runs/{first_id}").status_code == 404
        claim = f"idem:square:{key['Idempotency-Key']}"
        claimed_after_sweep = service.registry.store.claimed(claim) if hasattr(
            service.registry.store, "claimed") else "no claimed()"
        again = start(client, "square", {"n": 3}, **key)
        assert again.status_code == 200, again.text
        assert again.json()["run_id"] != first_id
        assert "idempotent-replayed" not in again.headers
        replay = start(client, "square", {"n": 3}, **key)
        assert replay.json()["run_id"] == again.json()["run_id"]
        assert replay.headers["idempotent-replayed"] == "true"
        assert claimed_after_sweep is None  # the sweep dropped it, not the replay


def test_an_idempotency_key_replayed_after_its_run_expired_starts_a_new_run(
        make_service, store_kind) -> None:
    service = make_service(store_kind, keep_s=0.5, lost_after_s=0.5)
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        key = {"Idempotency-Key": f"order-{uuid.uuid4().hex[:8]}", "Prefer": "wait=20"}
        first_id = start(client, "square", {"n": 3}, **key).json()["run_id"]
        wait_until(lambda: client.get(f"/api/runs/{first_id}").status_code == 404,
                   what="the finished run to expire")
        again = start(client, "square", {"n": 3}, **key)
        assert again.status_code == 200, again.text
        assert again.json()["run_id"] != first_id


def test_an_idempotency_key_replayed_while_its_run_outlives_keep_s_returns_that_run(
        make_service, store_kind) -> None:
    service = make_service(store_kind, keep_s=0.5, lost_after_s=0.5)
    gate = gate_name()
    key = {"Idempotency-Key": f"order-{uuid.uuid4().hex[:8]}"}
    try:
        with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
            first = start(client, "gated", {"gate": gate}, **key).json()
            store = service.registry.store
            wait_until(lambda: store.get(first["run_id"]).heartbeat_at
                       > first["created_at"] + 3 * (0.5 + 0.5),
                       what="the run to outlive its first claim's expiry")
            replay = start(client, "gated", {"gate": gate}, **key)
            assert replay.json()["run_id"] == first["run_id"]
            assert replay.headers["idempotent-replayed"] == "true"
    finally:
        svc_pipelines.gate(gate).set()


def test_a_claim_whose_run_record_vanished_is_released_by_the_replay(
        make_service, redis_server, prefix) -> None:
    service = make_service("redis")
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        key = {"Idempotency-Key": f"order-{uuid.uuid4().hex[:8]}", "Prefer": "wait=20"}
        first_id = start(client, "square", {"n": 3}, **key).json()["run_id"]
        redis_server.client().delete(f"{prefix}:run:{first_id}")  # gone, claim left
        again = start(client, "square", {"n": 3}, **key)
        assert again.status_code == 200, again.text
        assert again.json()["run_id"] != first_id


# -- item 21: find a run by its Idempotency-Key -----------------------------------------
def test_a_client_finds_its_run_by_idempotency_key_while_its_prefer_wait_post_waits(
        make_service, store_kind) -> None:
    service = make_service(store_kind)
    gate, key = gate_name(), f"order-{uuid.uuid4().hex[:8]}"
    replies: list[httpx.Response] = []
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:  # another's run
        decoy = start(client, "gated", {"gate": gate}, **{"Idempotency-Key": "other"})
        assert decoy.status_code == 202

    def post() -> None:
        with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as own:
            replies.append(start(own, "gated", {"gate": gate},
                                 **{"Idempotency-Key": key, "Prefer": "wait=60"}))

    poster = threading.Thread(target=post)
    poster.start()
    try:
        with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
            query = {"pipeline": "gated", "idempotency_key": key}

            def running() -> dict | None:
                runs = client.get("/api/runs", params=query).json()["runs"]
                return runs[0] if runs and runs[0]["state"] == "running" else None

            found = wait_until(running, what="the run to be listed by its key")
            assert found["run_id"] != decoy.json()["run_id"]
            assert client.get("/api/runs", params=query).json()["total"] == 1
            assert not replies, "the POST answered before the run ended"
            svc_pipelines.gate(gate).set()
            poster.join(WAIT_S)
            assert replies[0].status_code == 200
            assert replies[0].json()["run_id"] == found["run_id"]
            assert replies[0].json()["state"] == "succeeded"
            other = client.get("/api/runs", params={"pipeline": "square",
                                                    "idempotency_key": key}).json()
            assert other["runs"] == [] and other["total"] == 0
    finally:
        svc_pipelines.gate(gate).set()
        poster.join(WAIT_S)


def test_an_idempotency_key_without_pipeline_is_looked_up_in_every_pipeline(
        make_service, store_kind) -> None:
    service = make_service(store_kind)
    key = {"Idempotency-Key": f"order-{uuid.uuid4().hex[:8]}", "Prefer": "wait=20"}
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        assert start(client, "square", {"n": 5}, Prefer="wait=20").status_code == 200
        ids = {start(client, name, data, **key).json()["run_id"]
               for name, data in (("square", {"n": 2}), ("hello", None))}
        found = client.get("/api/runs", params={"idempotency_key": key["Idempotency-Key"]})
        assert found.status_code == 200
        assert {r["run_id"] for r in found.json()["runs"]} == ids
        assert found.json()["total"] == 2
        assert client.get("/api/runs", params={"pipeline": "gated",
                                               "idempotency_key": "never-used"}
                          ).json()["runs"] == []
        bad = client.get("/api/runs", params={"idempotency_key": "\x01"})
        assert bad.status_code == 400 and bad.headers["content-type"] == PROBLEM


# -- item 20: at most max_running runs, the others wait in order ------------------------
def test_runs_beyond_max_running_wait_in_order_and_show_their_queue_position(
        make_service) -> None:
    service = make_service("memory", max_running=1)
    gates = [gate_name() for _ in range(3)]
    try:
        with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
            replies = [start(client, "gated", {"gate": g}).json() for g in gates]
            a, b, c = (r["run_id"] for r in replies)
            assert "queue_position" not in replies[0]
            assert [r.get("queue_position") for r in replies[1:]] == [1, 2]
            wait_until(lambda: status(client, a)["state"] == "running", what="a to run")
            # the store gets the positions from the writer thread, soon after the replies
            wait_until(lambda: [status(client, r).get("queue_position") for r in (b, c)]
                       == [1, 2], what="the queue positions in the store")
            svc_pipelines.gate(gates[2]).set()  # c may go, but b is first in line
            svc_pipelines.gate(gates[0]).set()
            wait_until(lambda: status(client, b)["state"] == "running", what="b to run")
            wait_until(lambda: status(client, c).get("queue_position") == 1,
                       what="c to move up")
            assert status(client, c)["state"] == "pending"
            svc_pipelines.gate(gates[1]).set()
            wait_until(lambda: status(client, c)["state"] == "succeeded", what="c to end")
            final = [status(client, run_id) for run_id in (a, b, c)]
            assert [s["state"] for s in final] == ["succeeded"] * 3
            assert all("queue_position" not in s for s in final)
            assert final[0]["finished_at"] <= final[1]["started_at"]
            assert final[1]["finished_at"] <= final[2]["started_at"]
    finally:
        for gate in gates:
            svc_pipelines.gate(gate).set()


def test_a_cancelled_queued_run_leaves_the_queue_and_ends_without_running_a_stage(
        make_service) -> None:
    service = make_service("memory", max_running=1)
    gates = [gate_name() for _ in range(3)]
    try:
        with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
            a, b, c = (start(client, "gated", {"gate": g}).json()["run_id"] for g in gates)
            assert client.delete(f"/api/runs/{b}").status_code == 202
            wait_until(lambda: status(client, b)["state"] == "cancelled", what="b to end")
            wait_until(lambda: status(client, c).get("queue_position") == 1,
                       what="c to move up")
            ended = status(client, b)
            assert ended["stages"][0]["state"] == "cancelled"
            assert ended["stages"][0]["started_at"] is None
            assert status(client, a)["state"] == "running"
            svc_pipelines.gate(gates[0]).set()
            svc_pipelines.gate(gates[2]).set()
            wait_until(lambda: status(client, c)["state"] == "succeeded", what="c to end")
    finally:
        for gate in gates:
            svc_pipelines.gate(gate).set()


def test_a_failed_run_frees_its_slot_for_the_next(make_service) -> None:
    service = make_service("memory", max_running=1)
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        assert start(client, "fails", {}, Prefer="wait=20").json()["state"] == "failed"
        assert start(client, "square", {"n": 2}, Prefer="wait=20").json()["state"] \
            == "succeeded"


def test_runs_this_process_starts_itself_are_not_queued(registries) -> None:
    registry = RunRegistry(svc_pipelines.PIPELINES, max_running=1, adopt=True)
    registries.append(registry)
    gate = gate_name()
    try:
        registry.start("gated", {"gate": gate})
        queued, _ = registry.start("hello")
        assert queued["queue_position"] == 1
        run = svc_pipelines.square.start({"n": 3}, display=False)
        assert run.result(WAIT_S) == {"sum_of_squares": 5}
        assert registry.get(queued["run_id"])["state"] == "pending"
    finally:
        svc_pipelines.gate(gate).set()
    recorded_done(registry, queued["run_id"])
    assert registry.get(queued["run_id"])["state"] == "succeeded"


def test_closing_the_registry_cancels_the_runs_still_queued(registries) -> None:
    store = MemoryStore()
    registry = RunRegistry(svc_pipelines.PIPELINES, store, max_running=1)
    gate = gate_name()
    try:
        registry.start("gated", {"gate": gate})
        queued, _ = registry.start("hello")
        registry.close()
    finally:
        svc_pipelines.gate(gate).set()
    assert json.loads(store.get(queued["run_id"]).status_json)["state"] == "cancelled"


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "3"])
def test_max_running_must_be_a_positive_int(value) -> None:
    with pytest.raises(sw.ConfigError, match="max_running must be a positive int"):
        RunRegistry(svc_pipelines.PIPELINES, max_running=value)


# -- item 4: heartbeats without observers, lost only when the owner is gone -------------
def test_a_blocked_observer_does_not_stop_the_runs_heartbeat(registries) -> None:
    store = MemoryStore()
    owner = RunRegistry(svc_pipelines.PIPELINES, store, lost_after_s=0.4)
    owner.owner = "elsewhere:1"  # another host's: no liveness check can vouch for it
    owner._writer.owner = owner.owner
    reader = RunRegistry((), store, lost_after_s=0.4)
    registries += [owner, reader]
    gate, release = gate_name(), threading.Event()
    blocked = threading.Event()

    def blocking_observer(snapshot: RunStatus) -> None:
        blocked.set()
        release.wait(WAIT_S)

    try:
        run_id = owner.start("gated", {"gate": gate})[0]["run_id"]
        owner.local_run(run_id).subscribe(blocking_observer)
        assert blocked.wait(WAIT_S)
        first = store.get(run_id).heartbeat_at
        states = set()

        def three_limits_passed() -> bool:
            states.add(reader.get(run_id)["state"])
            return store.get(run_id).heartbeat_at > first + 3 * 0.4

        wait_until(three_limits_passed, what="heartbeats while the observer blocks")
        assert states <= {"pending", "running"}, states
    finally:
        release.set()
        svc_pipelines.gate(gate).set()
    recorded_done(owner, run_id)
    assert reader.get(run_id)["state"] == "succeeded"


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(WAIT_S)
    return child.pid


@pytest.mark.parametrize(("owner", "state"), [
    (lambda: f"{socket.gethostname()}:{os.getppid()}", "running"),  # alive, this host
    (lambda: f"{socket.gethostname()}:{dead_pid()}", "lost"),  # gone, this host
    (lambda: "some-other-host:1", "lost"),  # cannot be checked: its heartbeat decides
    (lambda: f"{socket.gethostname()}:{os.getppid()} (stopped serving)", "lost"),
])
def test_a_silent_run_is_lost_only_when_its_owner_is_not_alive_here(registries, owner,
                                                                      state) -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    reader = RunRegistry((), store, lost_after_s=10, clock=clock)
    registries.append(reader)
    body = json.dumps({"run_id": "r1", "pipeline": "p", "state": "running", "stages": []})
    store.put(Record("r1", "p", "running", clock.now, None, clock.now, owner(), body),
              keep_s=600)
    clock.tick(11)
    seen = reader.get("r1")
    assert seen["state"] == state
    assert [r["run_id"] for r in reader.list(state=state).runs] == ["r1"]


def test_a_run_let_go_by_a_closed_registry_reads_lost_once_silent(registries) -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    owner = RunRegistry(svc_pipelines.PIPELINES, store, lost_after_s=1, clock=clock)
    reader = RunRegistry((), store, lost_after_s=1, clock=clock)
    registries.append(reader)
    gate = gate_name()
    try:
        run_id = owner.start("gated", {"gate": gate})[0]["run_id"]
        owner.close()
        clock.tick(2)
        lost = reader.get(run_id)
        assert lost["state"] == "lost"
        assert "stopped serving" in lost["error"]["message"]
    finally:
        svc_pipelines.gate(gate).set()


# -- item 1 (registry side): a final status is always recorded --------------------------
def test_a_status_that_json_cannot_hold_is_recorded_cut_down_and_the_run_ends(
        registries, monkeypatch) -> None:
    original = RunStatus.to_dict

    def to_dict(self):
        if self.pipeline == "square":
            raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")
        return original(self)

    monkeypatch.setattr(RunStatus, "to_dict", to_dict)
    registry = RunRegistry(svc_pipelines.PIPELINES)
    registries.append(registry)
    run_id = registry.start("square", {"n": 3})[0]["run_id"]
    recorded_done(registry, run_id)
    recorded = registry.get(run_id)
    assert recorded["state"] == "succeeded"
    assert recorded["result"] is None
    assert "4300 digits" in recorded["result_unavailable"]
    assert [s["state"] for s in recorded["stages"]] == ["succeeded", "succeeded"]
    assert registry.local_run(run_id) is None


def test_a_done_waiter_raising_base_exception_does_not_stop_the_others(registries) -> None:
    registry = RunRegistry(svc_pipelines.PIPELINES)
    registries.append(registry)
    gate = gate_name()
    run_id = registry.start("gated", {"gate": gate})[0]["run_id"]
    later = threading.Event()

    def exits() -> None:
        raise SystemExit(3)

    registry.when_recorded_done(run_id, exits)
    registry.when_recorded_done(run_id, later.set)
    svc_pipelines.gate(gate).set()
    assert later.wait(WAIT_S)
    again = registry.start("square", {"n": 2})[0]["run_id"]
    recorded_done(registry, again)  # the writer lives on
    assert registry.get(again)["state"] == "succeeded"


# -- item 19: one log line per run start and end ----------------------------------------
def test_the_registry_logs_one_line_per_run_start_and_end(registries, caplog) -> None:
    registry = RunRegistry(svc_pipelines.PIPELINES)
    registries.append(registry)
    with caplog.at_level(logging.INFO, logger="stagewidget.service"):
        good = registry.start("square", {"n": 2})[0]["run_id"]
        bad = registry.start("fails", {"row": 7})[0]["run_id"]
        recorded_done(registry, good)
        recorded_done(registry, bad)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records
             if r.name == "stagewidget.service"]
    about_good = [line for line in lines if good in line[1]]
    about_bad = [line for line in lines if bad in line[1]]
    assert [level for level, _ in about_good] == ["INFO", "INFO"], lines
    assert "started" in about_good[0][1] and "succeeded" in about_good[1][1]
    assert [level for level, _ in about_bad] == ["INFO", "WARNING"]
    assert "failed in stage 'load'" in about_bad[1][1]
    assert "row 7 is malformed" in about_bad[1][1]


# -- item 11: a damaged record hurts only itself ----------------------------------------
def damage(service, redis_server, prefix, run_id: str, **fields: str) -> None:
    store = service.registry.store
    if store.name == "redis":
        redis_server.client().hset(f"{prefix}:run:{run_id}", mapping=fields)
    else:
        store.put(replace(store.get(run_id), **fields), keep_s=60)


def test_a_damaged_record_is_skipped_in_listings_and_fails_only_its_own_reads(
        request, make_service, store_kind, prefix) -> None:
    service = make_service(store_kind)
    redis = request.getfixturevalue("redis_server") if store_kind == "redis" else None
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        good, bad = (start(client, "square", {"n": n}, Prefer="wait=20").json()["run_id"]
                     for n in (2, 3))
        damage(service, redis, prefix, bad, status_json="{")
        listing = client.get("/api/runs")
        assert listing.status_code == 200
        listed = [r["run_id"] for r in listing.json()["runs"]]
        assert good in listed and bad not in listed
        assert client.get(f"/api/runs/{good}").status_code == 200
        for method, path in (("GET", f"/api/runs/{bad}"), ("GET", f"/api/runs/{bad}/events")):
            reply = client.request(method, path)
            assert reply.status_code == 500, (path, reply.text)
            assert reply.headers["content-type"] == PROBLEM
        assert client.delete(f"/api/runs/{bad}").status_code == 409  # it had succeeded
        service.registry.sweep()
        assert client.get("/api/runs", params={"state": "succeeded"}).status_code == 200


def test_a_damaged_record_of_a_running_run_can_still_be_cancelled(
        request, make_service, store_kind, prefix) -> None:
    service = make_service(store_kind)
    redis = request.getfixturevalue("redis_server") if store_kind == "redis" else None
    gate = gate_name()
    try:
        with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
            run_id = start(client, "gated", {"gate": gate}).json()["run_id"]
            damage(service, redis, prefix, run_id, status_json="[1")
            reply = client.delete(f"/api/runs/{run_id}")
            assert reply.status_code == 202
            assert reply.json()["run_id"] == run_id
            wait_until(lambda: status(client, run_id).get("state") == "cancelled",
                       what="the run to be cancelled")
    finally:
        svc_pipelines.gate(gate).set()


def test_redis_records_missing_fields_or_of_the_wrong_type_are_skipped(
        make_service, redis_server, prefix) -> None:
    service = make_service("redis")
    client_redis = redis_server.client()
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        good, partial, wrong = (
            start(client, "square", {"n": n}, Prefer="wait=20").json()["run_id"]
            for n in (2, 3, 4))
        client_redis.hdel(f"{prefix}:run:{partial}", "created_at")
        client_redis.delete(f"{prefix}:run:{wrong}")
        client_redis.set(f"{prefix}:run:{wrong}", "not a hash", ex=60)
        listing = client.get("/api/runs")
        assert listing.status_code == 200
        assert [r["run_id"] for r in listing.json()["runs"]] == [good]
        for run_id in (partial, wrong):
            reply = client.get(f"/api/runs/{run_id}")
            assert reply.status_code == 500 and reply.headers["content-type"] == PROBLEM
        assert service.registry.sweep() == 0


def test_record_from_fields_names_the_damage() -> None:
    from stagewidget.service.store import DamagedRecord

    fields = Record("r1", "p", "running", 1.0, None, 1.0, "h:1", "{}").fields()
    assert Record.from_fields(fields).claim == ""
    with pytest.raises(DamagedRecord, match="run 'r1' has no 'created_at' field"):
        Record.from_fields({k: v for k, v in fields.items() if k != "created_at"})
    with pytest.raises(DamagedRecord, match="unknown state"):
        Record.from_fields({**fields, "state": "exploded"})
    with pytest.raises(DamagedRecord, match="damaged"):
        Record.from_fields({**fields, "heartbeat_at": "soon"})


# -- item 2's sibling: store callbacks are isolated like observers ----------------------
def test_a_watcher_raising_base_exception_stops_neither_the_writer_nor_the_listener(
        request, store_kind, prefix, registries) -> None:
    store = harness.make_store(request, store_kind, prefix)
    registry = RunRegistry(svc_pipelines.PIPELINES, store)
    registries.append(registry)
    gate = gate_name()
    run_id = registry.start("gated", {"gate": gate})[0]["run_id"]
    later, heard, seen = threading.Event(), threading.Event(), threading.Event()

    def exits(record: Record) -> None:
        raise SystemExit("a watcher gave up")

    def sees(record: Record) -> None:
        heard.set()
        if record.terminal:
            seen.set()

    store.watch(run_id, exits)
    store.watch(run_id, sees)
    assert heard.wait(WAIT_S)  # a heartbeat came through: the listener is subscribed
    svc_pipelines.gate(gate).set()
    recorded_done(registry, run_id)
    assert seen.wait(WAIT_S)
    second_gate = gate_name()
    again = registry.start("gated", {"gate": second_gate})[0]["run_id"]
    store.watch(again, lambda record: record.terminal and later.set())
    svc_pipelines.gate(second_gate).set()
    recorded_done(registry, again)
    assert later.wait(WAIT_S), "the store stopped telling watchers"
    store.close()


QUIET_OWNER = """
import stagewidget as sw
import svc_pipelines

service = sw.serve(svc_pipelines.PIPELINES, port=0)
run = svc_pipelines.fails.start({"row": 1}, display=False)
run.wait()
service.stop()
print("done", run.status().state.value)
"""


def test_service_run_lines_stay_quiet_where_logging_is_not_configured(tmp_path) -> None:
    """A notebook's sw.serve() prints no service log line (a failed run's is a WARNING)."""
    script = tmp_path / "owner.py"
    script.write_text(QUIET_OWNER)
    done = subprocess.run([sys.executable, str(script)], cwd=harness.HERE, timeout=WAIT_S,
                          env=dict(os.environ, PYTHONPATH=str(harness.HERE)),
                          capture_output=True, text=True)
    assert done.stdout.strip() == "done failed", done.stderr
    assert "stagewidget.service" not in done.stderr and "failed" not in done.stderr, done.stderr
