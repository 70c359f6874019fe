"""Shutdown of ``python -m stagewidget serve`` on SIGTERM and SIGINT, with real Redis.

Every run's final state reaches the store before the process exits 0: finished within
the drain, cancelled after it (at once on a second signal), flushed even when Redis
writes were delayed; with ``--executor process`` no worker outlives the server.
"""

from __future__ import annotations

import json
import signal
import sys
import uuid
from pathlib import Path

import harness
import httpx
import pytest
from conftest import WAIT_S
from harness import auth, wait_until
from processes import alive, kill_leftovers, read_pids, wait_gone

from stagewidget.service.redis_store import RedisStore

pytestmark = pytest.mark.integration

redis_server, service_process = harness.redis_server, harness.service_process
prefix = harness.prefix
PIPELINES = "shutdown_pipelines:PIPELINES"


def stored_state(redis_server, run_id: str) -> str:
    """The run's state as the store has it (what every other reader builds on)."""
    store = RedisStore(redis_server.url)
    try:
        record = store.get(run_id)
        assert record is not None, f"run {run_id} is not in the store"
        assert json.loads(record.status_json)["state"] == record.state
        return record.state
    finally:
        store.close()


def start(server, pipeline: str, data: dict) -> str:
    response = server.http.post(f"/api/pipelines/{pipeline}/runs", json=data)
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    wait_until(lambda: server.http.get(f"/api/runs/{run_id}").json()["state"] == "running",
               what="the run to start")
    return run_id


def stopped_listening(server) -> bool:
    assert server.proc.poll() is None, "the service exited before the run ended"
    try:
        server.http.get("/api/health")
    except httpx.TransportError:
        return True
    return False


def gate_files(tmp_path: Path) -> dict:
    name = uuid.uuid4().hex[:8]
    return {"gate": str(tmp_path / f"gate-{name}"), "done": str(tmp_path / f"done-{name}")}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_cancels_runs_after_the_drain_records_them_and_exits_0(
        service_process, redis_server, tmp_path, sig) -> None:
    server = service_process("--drain-s", "0.2", pipelines=PIPELINES)
    run_id = start(server, "gated", gate_files(tmp_path))
    code, output = server.terminate(sig)
    assert code == 0, output
    assert "Traceback" not in output, output
    assert stored_state(redis_server, run_id) == "cancelled"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_run_finishing_within_the_drain_is_recorded_succeeded(
        service_process, redis_server, tmp_path, sig) -> None:
    server = service_process("--drain-s", "60", pipelines=PIPELINES)
    files = gate_files(tmp_path)
    run_id = start(server, "gated", files)
    server.proc.send_signal(sig)
    wait_until(lambda: stopped_listening(server), what="the service to stop listening")
    Path(files["gate"]).touch()  # the run may finish now, during the drain
    code, output = server.proc.wait(WAIT_S), server.output()
    assert code == 0, output
    assert stored_state(redis_server, run_id) == "succeeded"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_during_the_drain_cancels_at_once(
        service_process, redis_server, tmp_path, sig) -> None:
    server = service_process("--drain-s", "600", pipelines=PIPELINES)
    run_id = start(server, "gated", gate_files(tmp_path))
    server.proc.send_signal(sig)
    wait_until(lambda: stopped_listening(server), what="the service to stop listening")
    code, output = server.terminate(sig)
    assert code == 0, output
    assert stored_state(redis_server, run_id) == "cancelled"


def test_a_status_whose_write_was_delayed_is_flushed_on_sigterm(
        service_process, redis_server, tmp_path) -> None:
    server = service_process("--drain-s", "60", pipelines=PIPELINES)
    files = gate_files(tmp_path)
    run_id = start(server, "gated", files)
    redis = redis_server.client()
    try:
        redis.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
        Path(files["gate"]).touch()
        wait_until(lambda: Path(files["done"]).exists(), what="the run to finish")
        assert stored_state(redis_server, run_id) == "running"  # its write is held up
        code, output = server.terminate()
    finally:
        redis.execute_command("CLIENT", "UNPAUSE")
        redis.close()
    assert code == 0, output
    assert stored_state(redis_server, run_id) == "succeeded"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("stubborn", [False, True], ids=["cooperative", "ignores-cancel"])
def test_sigterm_leaves_no_worker_process_of_the_process_executor(
        service_process, redis_server, tmp_path, stubborn) -> None:
    server = service_process("--drain-s", "0.2", "--executor", "process",
                             pipelines=PIPELINES)
    pids_file = tmp_path / "pids"
    run_id = start(server, "spawner", {"pids": str(pids_file), "stubborn": stubborn})
    pids: list[int] = []
    try:
        pids = read_pids(pids_file)
        assert all(alive(pid) for pid in pids)
        code, output = server.terminate()
        assert code == 0, output
        wait_gone(pids)
        assert stored_state(redis_server, run_id) == "cancelled"
    finally:
        kill_leftovers(pids)


def test_stop_leaves_runs_going_and_records_how_they_end(redis_server, prefix) -> None:
    import svc_pipelines

    from stagewidget.service import Service

    service = Service(svc_pipelines.PIPELINES, port=0, redis=redis_server.url,
                      prefix=prefix, adopt=True).start()
    gate = f"gate-{uuid.uuid4().hex[:8]}"
    try:
        with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
            run_id = client.post("/api/pipelines/gated/runs", json={"gate": gate}).json()[
                "run_id"]
        run = service.registry.local_run(run_id)
        assert run is not None
        service.stop()
        later = svc_pipelines.hello.start(display=False)  # started after stop: not published
        assert run.status().state.value == "running"  # stop() did not end it
        svc_pipelines.gate(gate).set()
        assert run.wait(WAIT_S).state.value == "succeeded"
        store = RedisStore(redis_server.url, prefix=prefix)
        try:
            wait_until(lambda: (r := store.get(run_id)) is not None and r.state == "succeeded",
                       what="the final status to be written after stop()")
            later.wait(WAIT_S)
            assert store.get(later.run_id) is None
        finally:
            store.close()
    finally:
        svc_pipelines.gate(gate).set()
        service.stop()


def test_shutdown_records_a_run_ignoring_cancel_as_cancelled(redis_server, prefix) -> None:
    import threading

    import stagewidget as sw
    from stagewidget.service import Service

    release = threading.Event()
    started = threading.Event()

    def stubborn(_):
        started.set()
        release.wait()  # never calls sw.*

    pipe = sw.Pipeline("stubborn", [sw.Stage(stubborn), sw.Stage(lambda x: x, name="after")])
    service = Service([pipe], port=0, redis=redis_server.url, prefix=prefix).start()
    try:
        run_id = service.registry.start("stubborn", {})[0]["run_id"]
        assert started.wait(WAIT_S)
        service.shutdown(drain_s=0, cancel_wait_s=0.1)
        store = RedisStore(redis_server.url, prefix=prefix)
        try:
            record = store.get(run_id)
        finally:
            store.close()
        status = json.loads(record.status_json)
        assert record.state == status["state"] == "cancelled"
        assert [s["state"] for s in status["stages"]] == ["cancelled", "skipped"]
        assert "did not stop within 0.1 s of cancel" in status["logs"][-1]
    finally:
        release.set()
        service.stop()
