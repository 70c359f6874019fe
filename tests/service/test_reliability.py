"""Runs stay truthful across processes: a blocked observer or a queued run is never lost."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import harness
import httpx
import pytest
from conftest import WAIT_S
from harness import HERE, auth, read_events, wait_until

pytestmark = pytest.mark.integration

redis_server, service_process = harness.redis_server, harness.service_process

LOST_AFTER_S = 1.0

# A notebook-like process: sw.serve() publishes its runs to Redis; one of them has an
# observer that blocks (on a file appearing) long after the run started.
OWNER = """
import os, sys, time
import stagewidget as sw
import svc_pipelines

redis_url, port, release = sys.argv[1], int(sys.argv[2]), sys.argv[3]
service = sw.serve([], port=port, redis=redis_url, lost_after_s=float(sys.argv[4]))

def blocking_observer(status):
    while not os.path.exists(release):
        time.sleep(0.02)

run = svc_pipelines.slow.start({"steps": 100_000, "step_s": 0.01}, display=False)
run.subscribe(blocking_observer)
print(run.run_id, flush=True)
run.wait()
service.stop()
"""


def heartbeat_of(redis_server, run_id: str) -> float:
    return float(redis_server.client().hget(f"stagewidget:run:{run_id}", "heartbeat_at"))


def collect_events(server, run_id: str, into: list[tuple[str, dict]]) -> threading.Thread:
    """Read the run's event stream from ``server`` into ``into`` (in a thread) until it ends."""

    def read() -> None:
        with httpx.Client(base_url=server.url, timeout=WAIT_S, headers=auth(server)) as client, \
                client.stream("GET", f"/api/runs/{run_id}/events") as stream:
            into.extend(read_events(stream))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


def test_an_observer_blocking_three_times_lost_after_s_never_makes_the_run_lost_elsewhere(
        redis_server, service_process, tmp_path: Path) -> None:
    script, release = tmp_path / "owner.py", tmp_path / "release"
    script.write_text(OWNER)
    owner = subprocess.Popen(
        [sys.executable, str(script), redis_server.url, str(harness.free_port()),
         str(release), str(LOST_AFTER_S)],
        cwd=HERE, env=dict(os.environ, PYTHONPATH=str(HERE)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert owner.stdout is not None
        run_id = owner.stdout.readline().strip()
        assert len(run_id) == 36, run_id + owner.stdout.read()
        reader = service_process("--lost-after-s", str(LOST_AFTER_S))
        wait_until(lambda: reader.http.get(f"/api/runs/{run_id}").status_code == 200,
                   what="the run to be recorded")
        events: list[tuple[str, dict]] = []
        streaming = collect_events(reader, run_id, events)
        first = heartbeat_of(redis_server, run_id)
        states = set()

        def three_limits_passed() -> bool:
            states.add(reader.http.get(f"/api/runs/{run_id}").json()["state"])
            return heartbeat_of(redis_server, run_id) > first + 3 * LOST_AFTER_S

        wait_until(three_limits_passed, what="heartbeats while the observer blocks")
        assert states == {"running"}
        assert not [d for k, d in events if k == "end"], events[-1:]
        release.touch()
        assert reader.http.delete(f"/api/runs/{run_id}").status_code == 202
        streaming.join(WAIT_S)
        assert not streaming.is_alive()
        assert events[-1] == ("end", {"state": "cancelled"})
        assert "lost" not in {d["state"] for _, d in events}
        assert owner.wait(WAIT_S) == 0
    finally:
        release.touch()
        if owner.poll() is None:
            owner.kill()
            owner.wait(WAIT_S)


def test_a_queued_run_keeps_its_heartbeat_and_is_never_lost_elsewhere(
        redis_server, service_process) -> None:
    owner = service_process("--max-running", "1", "--lost-after-s", str(LOST_AFTER_S))
    reader = service_process("--lost-after-s", str(LOST_AFTER_S))
    first_run = owner.http.post("/api/pipelines/slow/runs",
                                json={"steps": 100_000, "step_s": 0.01}).json()["run_id"]
    queued = owner.http.post("/api/pipelines/hello/runs").json()
    assert queued["state"] == "pending" and queued["queue_position"] == 1
    run_id = queued["run_id"]
    events: list[tuple[str, dict]] = []
    streaming = collect_events(reader, run_id, events)
    first = heartbeat_of(redis_server, run_id)
    seen = []

    def three_limits_passed() -> bool:
        status = reader.http.get(f"/api/runs/{run_id}").json()
        seen.append((status["state"], status.get("queue_position")))
        return heartbeat_of(redis_server, run_id) > first + 3 * LOST_AFTER_S

    wait_until(three_limits_passed, what="heartbeats of the queued run")
    assert set(seen) == {("pending", 1)}
    assert reader.http.delete(f"/api/runs/{first_run}").status_code == 202
    streaming.join(WAIT_S)
    assert events[-1] == ("end", {"state": "succeeded"})
    assert "lost" not in {d["state"] for _, d in events}
    ended = reader.http.get(f"/api/runs/{first_run}").json()
    started = reader.http.get(f"/api/runs/{run_id}").json()
    assert ended["state"] == "cancelled"
    assert started["result"] == "hello" and "queue_position" not in started
    assert ended["finished_at"] <= started["started_at"]
