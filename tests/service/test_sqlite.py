"""The SQLite store: expiry and claims, damage, polling between processes, restarts, --store.

The HTTP API itself runs on SQLite in test_api.py (the ``store_kind`` parametrisation).
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from dataclasses import replace

import harness
import pytest
from conftest import WAIT_S, FakeClock
from harness import wait_until

import stagewidget as sw
from stagewidget.__main__ import main
from stagewidget.errors import ConfigError
from stagewidget.service import MemoryStore, Record, RunRegistry
from stagewidget.service.server import make_store
from stagewidget.service.sqlite_store import SQLiteStore
from stagewidget.service.store import DamagedRecord

pytestmark = pytest.mark.integration

sqlite_process = harness.sqlite_process


def record(run_id: str, state: str = "running", **changes) -> Record:
    return replace(Record(run_id, "square", state, 1.0, None, 1.0, "h:1", '{"n": 1}'),
                   **changes)


@pytest.fixture
def stores(tmp_path):
    """Make SQLite stores on one file in the test's tmp dir; close them after."""
    made: list[SQLiteStore] = []

    def make(**options) -> SQLiteStore:
        store = SQLiteStore(tmp_path / "runs.db", **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def test_records_and_claims_expire_and_a_write_extends_its_runs_claim(stores) -> None:
    clock = FakeClock()
    store = stores(clock=clock)
    assert store.claim("idem:p:k", "r1 fp", 10.0) is None
    assert store.claim("idem:p:k", "r2 fp", 10.0) == "r1 fp"
    store.put(record("r1", claim="idem:p:k"), keep_s=100.0)
    clock.tick(50)
    assert store.get("r1") == record("r1", claim="idem:p:k")
    assert store.claimed("idem:p:k") == "r1 fp"  # lives as long as its run's record
    clock.tick(51)
    assert store.get("r1") is None and store.records() == []
    assert store.claimed("idem:p:k") is None
    assert store.claim("idem:p:k", "r3 fp", 10.0) is None  # an expired claim is free again


def test_removing_a_run_drops_only_the_claim_that_names_it(stores) -> None:
    store = stores()
    store.claim("idem:p:k", "r1 fp", 10.0)
    store.put(record("r1", claim="idem:p:k"), keep_s=10.0)
    store.put(record("r2", "pending", claim="idem:p:k"), keep_s=10.0)  # a duplicate
    store.remove(["r2"])
    assert store.claimed("idem:p:k") == "r1 fp"
    store.release("idem:p:k", "someone else's")
    assert store.claimed("idem:p:k") == "r1 fp"
    store.remove(["r1"])
    assert store.claimed("idem:p:k") is None and store.records() == []


def test_a_damaged_row_fails_only_its_own_read(stores, tmp_path) -> None:
    store = stores()
    store.put(record("good", pipeline="other"), keep_s=60)
    store.put(record("bad"), keep_s=60)
    with sqlite3.connect(tmp_path / "runs.db") as db:
        db.execute("UPDATE runs SET created_at = 'soon' WHERE run_id = 'bad'")
    with pytest.raises(DamagedRecord, match="run 'bad' is damaged"):
        store.get("bad")
    assert [r.run_id for r in store.records()] == ["good"]
    assert store.records("square") == []


def test_same_records_as_the_memory_store_whatever_the_values(stores) -> None:
    store, memory = stores(), MemoryStore()
    odd = [record("a"), record("b", "succeeded", finished_at=2.5, claim="idem:p:x"),
           record("c", status_json='{"text": "\\u00e9\\ud83d\\ude00 \' \\" ;--"}',
                  created_at=1e-300, heartbeat_at=1.7e9 + 0.123456789)]
    for each in odd:
        store.put(each, keep_s=60)
        memory.put(each, keep_s=60)
    assert sorted(store.records(), key=lambda r: r.run_id) == odd
    assert [store.get(r.run_id) for r in odd] == [memory.get(r.run_id) for r in odd]


def test_another_stores_writes_and_cancels_arrive_by_polling_and_own_writes_once(
        stores) -> None:
    a, b = stores(), stores()
    heard_by_b: list[Record] = []
    heard_by_a: list[Record] = []
    arrived, other_arrived = threading.Event(), threading.Event()
    b.watch("r1", lambda r: (heard_by_b.append(r), arrived.set()))
    a.watch("r1", heard_by_a.append)
    a.watch("r2", lambda r: other_arrived.set())
    a.put(record("r1"), keep_s=60)
    assert heard_by_a == [record("r1")]  # pushed at once, from the writing thread
    assert arrived.wait(WAIT_S), "store b never saw store a's write"
    assert heard_by_b == [record("r1")]
    b.put(record("r2"), keep_s=60)  # after r1 in the database: polled after it
    assert other_arrived.wait(WAIT_S)
    assert heard_by_a == [record("r1")], "store a's own write came back by polling"
    cancels: list[str] = []
    cancelled = threading.Event()
    a.on_cancel_request(lambda run_id: (cancels.append(run_id), cancelled.set()))
    b.request_cancel("r1")
    assert cancelled.wait(WAIT_S), "the cancel request never reached store a"
    assert cancels == ["r1"]


def test_a_run_of_one_registry_is_cancelled_through_another_on_the_same_file(stores) -> None:
    import svc_pipelines

    owner = RunRegistry(svc_pipelines.PIPELINES, stores())
    reader = RunRegistry(svc_pipelines.PIPELINES, stores())
    gate = f"gate-{uuid.uuid4().hex[:8]}"
    try:
        run_id = owner.start("gated", {"gate": gate})[0]["run_id"]
        assert reader.get(run_id)["state"] in ("pending", "running")
        done = threading.Event()
        owner.when_recorded_done(run_id, done.set)
        reader.cancel(run_id)
        assert done.wait(WAIT_S), "the owner never acted on the cancel"
        assert reader.get(run_id)["state"] == "cancelled"
        assert reader.get(run_id) == owner.get(run_id)
    finally:
        svc_pipelines.gate(gate).set()
        owner.close()
        reader.close()


def test_a_file_that_is_no_database_is_a_config_error(tmp_path) -> None:
    (tmp_path / "notes.db").write_text("not a database, just some words " * 100)
    with pytest.raises(ConfigError, match=r"cannot open the SQLite store at '.*notes\.db'"):
        SQLiteStore(tmp_path / "notes.db")


def test_the_database_files_are_readable_by_their_owner_only(stores, tmp_path) -> None:
    stores().put(record("r1"), keep_s=60)  # records hold results, logs and tracebacks
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["runs.db", "runs.db-shm", "runs.db-wal"]
    assert {name: (tmp_path / name).stat().st_mode & 0o777 for name in files} \
        == dict.fromkeys(files, 0o600)


def test_store_values_name_memory_redis_or_sqlite_and_nothing_else(tmp_path) -> None:
    assert isinstance(make_store(), MemoryStore)
    assert isinstance(make_store("memory"), MemoryStore)
    redis = make_store("redis://127.0.0.1:1/0")  # connects only when used
    assert redis.name == "redis"
    redis.close()
    sqlite = make_store(f"sqlite:///{tmp_path / 'runs.db'}")
    assert sqlite.name == "sqlite" and sqlite.path == str(tmp_path / "runs.db")
    sqlite.close()
    for bad, message in (("postgres://x/y", "unknown store 'postgres://x/y'"),
                         ("", "unknown store ''"),
                         ("sqlite://runs.db", "sqlite:///relative/path.db"),
                         ("sqlite:///", "sqlite:///relative/path.db"),
                         ("sqlite:///:memory:", "needs a file path")):
        with pytest.raises(ConfigError, match=message):
            make_store(bad)
    with pytest.raises(ConfigError, match="give the store once"):
        make_store("memory", redis="redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match="unknown store 'bogus'"):
        sw.serve(store="bogus", port=0)


def test_serve_exits_2_naming_a_bad_store(tmp_path, capsys) -> None:
    assert main(["serve", "svc_pipelines:PIPELINES", "--store", "mongodb://x"]) == 2
    assert "stagewidget serve: unknown store 'mongodb://x' (use memory, redis://" \
        in capsys.readouterr().err
    missing = tmp_path / "no-such-dir" / "runs.db"
    assert main(["serve", "svc_pipelines:PIPELINES", "--store", f"sqlite:///{missing}"]) == 2
    assert f"cannot open the SQLite store at '{missing}'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["serve", "svc_pipelines:PIPELINES", "--store", "memory", "--redis", "redis://x"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_after_a_crash_and_restart_finished_runs_read_the_same_and_running_ones_lost(
        sqlite_process) -> None:
    first = sqlite_process("--lost-after-s", "1")
    body = first.http.post("/api/pipelines/square/runs", json={"n": 100},
                           headers={"Prefer": "wait=20"}).json()
    assert body["state"] == "succeeded"
    running = first.http.post("/api/pipelines/slow/runs",
                              json={"steps": 100_000, "step_s": 0.01}).json()["run_id"]
    first.stop(kill=True)  # SIGKILL: no final write, maybe mid-transaction
    second = sqlite_process("--lost-after-s", "1")
    assert second.http.get(f"/api/runs/{body['run_id']}").json() == body
    lost = wait_until(lambda: (r := second.http.get(f"/api/runs/{running}").json())["state"]
                      == "lost" and r, what="the killed process's run to read lost")
    assert f":{first.proc.pid})" in lost["error"]["message"]
    listed = second.http.get("/api/runs").json()["runs"]
    assert [(r["run_id"], r["state"]) for r in listed] == [(running, "lost"),
                                                           (body["run_id"], "succeeded")]
    assert second.http.get("/api/health").json()["store"] == "sqlite"
