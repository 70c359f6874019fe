"""The HTTP API, run against every store (memory, a real redis-server, a SQLite file)."""

from __future__ import annotations

import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import harness
import httpx
import pytest
import svc_pipelines
from conftest import WAIT_S
from harness import auth, read_events, wait_until

import stagewidget as sw
from stagewidget.errors import ConfigError
from stagewidget.service import Service

pytestmark = pytest.mark.integration

redis_server, store_kind, prefix = harness.redis_server, harness.store_kind, harness.prefix
make_service, service, client = harness.make_service, harness.service, harness.client

PROBLEM = "application/problem+json"


def start(client: httpx.Client, pipeline: str, data=None, **headers) -> httpx.Response:
    return client.post(f"/api/pipelines/{pipeline}/runs", json=data, headers=headers)


def gate_name() -> str:
    return f"gate-{uuid.uuid4().hex[:8]}"


def state_of(client: httpx.Client, run_id: str) -> str:
    return client.get(f"/api/runs/{run_id}").json()["state"]


def test_post_records_the_run_before_replying_so_a_get_never_404s(client) -> None:
    gate = gate_name()
    reply = start(client, "gated", {"gate": gate})
    assert reply.status_code == 202
    run_id = reply.json()["run_id"]
    assert reply.headers["location"] == f"/api/runs/{run_id}"
    assert reply.json()["state"] in ("pending", "running")
    now = client.get(reply.headers["location"])
    assert now.status_code == 200 and now.json()["run_id"] == run_id
    assert now.json()["state"] in ("pending", "running")
    svc_pipelines.gate(gate).set()
    wait_until(lambda: state_of(client, run_id) == "succeeded", what="the run to succeed")
    assert client.get(f"/api/runs/{run_id}").json()["result"] == gate


def test_prefer_wait_answers_with_the_result_and_a_get_agrees(client) -> None:
    reply = start(client, "square", {"n": 1000}, Prefer="wait=20")
    assert reply.status_code == 200
    assert reply.headers["preference-applied"] == "wait=20"
    body = reply.json()
    assert body["state"] == "succeeded"
    assert body["result"] == {"sum_of_squares": sum(x * x for x in range(1000))}
    assert [s["state"] for s in body["stages"]] == ["succeeded", "succeeded"]
    assert body["stages"][1]["done"] == 1000
    assert client.get(reply.headers["location"]).json() == body


@pytest.mark.parametrize("store_kind", ["memory", "redis"])  # a wait of 2 s: not per store
def test_prefer_wait_gives_202_after_n_seconds_and_blocks_no_other_request(client) -> None:
    gate = gate_name()
    replies: list[httpx.Response] = []
    poster = threading.Thread(target=lambda: replies.append(
        start(client, "gated", {"gate": gate}, Prefer="wait=2")))
    poster.start()
    # While the POST waits, the server lists the run it started: it is not blocked.
    listed = wait_until(lambda: client.get("/api/runs", params={"pipeline": "gated"}).json()
                        ["runs"], what="the waiting POST's run to be listed")
    assert not replies, "the POST answered before its wait was over"
    assert client.get("/api/health").status_code == 200
    poster.join(WAIT_S)
    assert replies[0].status_code == 202
    assert replies[0].json()["run_id"] == listed[0]["run_id"]
    assert replies[0].json()["state"] == "running"
    svc_pipelines.gate(gate).set()


def test_a_failed_run_reports_its_error_type_message_and_stage(client) -> None:
    body = start(client, "fails", {"row": 7}, Prefer="wait=20").json()
    assert body["state"] == "failed"
    assert body["error"]["type"] == "ValueError"
    assert body["error"]["message"] == "row 7 is malformed"
    assert body["error"]["stage"] == "load"
    assert body["error"]["traceback"] == ""  # private unless opted in: see test_security.py
    assert body["result"] is None


def test_unknown_runs_and_pipelines_are_404_problems(client) -> None:
    missing = client.get(f"/api/runs/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    problem = missing.json()
    assert problem["status"] == 404 and problem["type"].endswith("run-not-found")
    assert "finished runs are kept for 600 s" in problem["detail"]
    nope = start(client, "nope", {})
    assert nope.status_code == 404 and "no pipeline named 'nope'" in nope.json()["detail"]
    assert "square" in nope.json()["detail"]
    assert client.get("/api/nowhere").headers["content-type"] == PROBLEM


@pytest.mark.parametrize("store_kind", ["memory"])
def test_bad_requests_get_specific_problems(make_service, store_kind) -> None:
    service = make_service(store_kind, max_body_bytes=1000)
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        cases = [
            (client.post("/api/pipelines/square/runs", content=b'{"n": 1}',
                         headers={"content-type": "text/plain"}), 415, "application/json"),
            (client.post("/api/pipelines/square/runs", content=b'{"n": ',
                         headers={"content-type": "application/json"}), 400, "not valid JSON"),
            (start(client, "square", {"n": "x" * 2000}), 413, "at most 1000 bytes"),
            (start(client, "hello", {"n": 1}), 422, "stage 'greet' must accept"),
            (client.get("/api/runs", params={"state": "sleeping"}), 400, "state must be one of"),
            (client.get("/api/runs", params={"limit": "0"}), 400, "limit must be an integer"),
            (start(client, "square", {"n": 1}, **{"Idempotency-Key": "x" * 300}), 400,
             "Idempotency-Key"),
            (client.put("/api/runs"), 405, "Method Not Allowed"),
        ]
        for reply, status, detail in cases:
            assert reply.status_code == status, reply.text
            assert reply.headers["content-type"] == PROBLEM
            assert detail in reply.json()["detail"], reply.json()
        assert client.get("/api/runs").json()["total"] == 0  # none of them started a run


def test_a_pipeline_without_input_starts_from_an_empty_body(client) -> None:
    body = client.post("/api/pipelines/hello/runs", headers={"Prefer": "wait=20"}).json()
    assert body["state"] == "succeeded" and body["result"] == "hello"


def test_listing_filters_by_state_and_pipeline_and_pages_newest_first(client) -> None:
    ids = [start(client, "square", {"n": n}, Prefer="wait=20").json()["run_id"]
           for n in (1, 2, 3)]
    failed = start(client, "fails", {}, Prefer="wait=20").json()["run_id"]
    everything = client.get("/api/runs").json()
    assert everything["total"] == 4
    assert [r["run_id"] for r in everything["runs"]] == [failed, *reversed(ids)]
    only_failed = client.get("/api/runs", params={"state": "failed"}).json()
    assert [r["run_id"] for r in only_failed["runs"]] == [failed]
    page = client.get("/api/runs", params={"pipeline": "square", "limit": 2}).json()
    assert [r["run_id"] for r in page["runs"]] == [ids[2], ids[1]] and page["total"] == 3
    rest = client.get(page["next"]).json()
    assert [r["run_id"] for r in rest["runs"]] == [ids[0]] and rest["next"] is None
    assert rest["runs"][0]["url"] == f"/api/runs/{ids[0]}"


def test_delete_cancels_a_running_run_and_409_once_it_ended(client) -> None:
    run_id = start(client, "gated", {"gate": gate_name()}).json()["run_id"]
    reply = client.delete(f"/api/runs/{run_id}")
    assert reply.status_code == 202 and reply.json()["run_id"] == run_id
    wait_until(lambda: state_of(client, run_id) == "cancelled", what="the run to cancel")
    stages = client.get(f"/api/runs/{run_id}").json()["stages"]
    assert stages[0]["state"] == "cancelled"
    again = client.delete(f"/api/runs/{run_id}")
    assert again.status_code == 409 and "already ended (cancelled)" in again.json()["detail"]
    assert client.delete(f"/api/runs/{uuid.uuid4()}").status_code == 404


def test_events_stream_the_progress_until_the_run_ends(client) -> None:
    run_id = start(client, "slow", {"steps": 20, "step_s": 0.05}).json()["run_id"]
    with client.stream("GET", f"/api/runs/{run_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = list(read_events(stream))
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "end" and events[-1][1] == {"state": "succeeded"}
    statuses = [data for kind, data in events if kind == "status"]
    assert statuses[-1]["state"] == "succeeded" and statuses[-1]["result"] == 20
    moving = [s["stages"][0]["done"] for s in statuses if s["state"] == "running"]
    assert any(0 < done < 20 for done in moving), moving
    assert moving == sorted(moving)


def test_events_of_a_finished_run_give_its_final_status_and_end(client) -> None:
    run_id = start(client, "square", {"n": 3}, Prefer="wait=20").json()["run_id"]
    with client.stream("GET", f"/api/runs/{run_id}/events") as stream:
        events = list(read_events(stream))
    assert [kind for kind, _ in events] == ["status", "end"]
    assert client.get(f"/api/runs/{uuid.uuid4()}/events").status_code == 404


def test_an_idempotency_key_returns_the_first_run_and_refuses_another_body(client) -> None:
    first = start(client, "square", {"n": 5}, **{"Idempotency-Key": "order-17"})
    again = start(client, "square", {"n": 5}, **{"Idempotency-Key": "order-17"})
    assert first.status_code == 202 and again.status_code == 202
    assert again.json()["run_id"] == first.json()["run_id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = start(client, "square", {"n": 6}, **{"Idempotency-Key": "order-17"})
    assert other.status_code == 422 and "different request" in other.json()["detail"]
    assert client.get("/api/runs").json()["total"] == 1


def test_pipelines_health_and_the_api_document(client, store_kind) -> None:
    pipelines = client.get("/api/pipelines").json()["pipelines"]
    assert {p["name"]: p["stages"] for p in pipelines}["square"] == ["prepare", "compute"]
    assert client.get("/api/health").json() == {"status": "ok", "store": store_kind,
                                                "pipelines": 5}
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert "/api/pipelines/square/runs" in document["paths"]
    assert "requestBody" not in document["paths"]["/api/pipelines/hello/runs"]["post"]


@pytest.mark.parametrize("store_kind", ["memory"])
def test_a_token_guards_everything_but_health(make_service, store_kind) -> None:
    service = make_service(store_kind, token="s3cret-token")
    with httpx.Client(base_url=service.url, timeout=WAIT_S) as anonymous:
        denied = anonymous.get("/api/runs")
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"].startswith("Bearer")
        wrong = anonymous.get("/api/runs", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401
        ok = anonymous.get("/api/runs", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200
        assert anonymous.get("/api/health").status_code == 200
        document = anonymous.get("/openapi.json", headers={"Authorization": "Bearer s3cret-token"})
        # the bearer token, or the browser session's cookie (named for the port)
        assert document.json()["security"] == [{"bearer": []}, {"session": []}]
        scheme = document.json()["components"]["securitySchemes"]["session"]
        assert scheme == {**scheme, "type": "apiKey", "in": "cookie",
                          "name": f"stagewidget_session_{service.port}"}


def test_binding_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(ConfigError, match=r"refusing to listen on '0\.0\.0\.0' without a token"):
        Service(svc_pipelines.PIPELINES, host="0.0.0.0", token="")
    Service(svc_pipelines.PIPELINES, host="0.0.0.0").registry.close()  # a generated token
    Service(svc_pipelines.PIPELINES, host="0.0.0.0", token="t").registry.close()


def test_finished_runs_expire_after_keep_s(make_service, store_kind) -> None:
    service = make_service(store_kind, keep_s=0.5)
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        run_id = start(client, "square", {"n": 2}, Prefer="wait=20").json()["run_id"]
        assert client.get(f"/api/runs/{run_id}").status_code == 200
        wait_until(lambda: client.get(f"/api/runs/{run_id}").status_code == 404,
                   what="the finished run to expire")
        assert client.get("/api/runs").json()["total"] == 0


def test_the_sweep_keeps_only_the_newest_finished_runs(make_service, store_kind) -> None:
    service = make_service(store_kind, max_finished=2, sweep_s=0.05)
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        ids = [start(client, "square", {"n": n}, Prefer="wait=20").json()["run_id"]
               for n in range(4)]
        wait_until(lambda: client.get("/api/runs").json()["total"] == 2,
                   what="the sweep to remove the oldest runs")
        assert [r["run_id"] for r in client.get("/api/runs").json()["runs"]] == ids[:1:-1]


def test_runs_this_process_starts_are_published_by_serve(request, store_kind) -> None:
    options = harness.store_options(request, store_kind, f"adopt-{uuid.uuid4().hex[:6]}")
    service = sw.serve(port=0, **options)
    try:
        run = svc_pipelines.square.start({"n": 10}, display=False)
        run.wait(WAIT_S)
        with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
            body = wait_until(lambda: (r := client.get(f"/api/runs/{run.run_id}")).status_code
                              == 200 and r.json()["state"] == "succeeded" and r.json(),
                              what="the notebook's run to be published")
        assert body["result"] == {"sum_of_squares": 285}
    finally:
        service.stop()
    assert "stopped" in repr(service)


def test_input_of_the_wrong_json_type_is_refused_before_a_run_starts(client) -> None:
    reply = start(client, "square", [1, 2, 3])
    assert reply.status_code == 422
    assert reply.json()["detail"] == ("pipeline 'square' takes a JSON object (its first stage "
                                      "is prepare(data: dict)); got array")
    document = client.get("/openapi.json").json()
    body = document["paths"]["/api/pipelines/square/runs"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"type": "object"}
    assert client.get("/api/runs").json()["total"] == 0


def test_concurrent_posts_are_each_readable_at_once(client) -> None:
    def post_and_read(n: int) -> tuple[int, int]:
        reply = start(client, "square", {"n": n})
        return reply.status_code, client.get(reply.headers["location"]).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(post_and_read, range(40)))
    assert codes == [(202, 200)] * 40
    assert client.get("/api/runs", params={"limit": 500}).json()["total"] == 40


def test_stop_closes_the_port_and_ends_the_service_threads() -> None:
    service = sw.serve(port=0)
    port = service.port
    socket.create_connection(("127.0.0.1", port), 1).close()
    service.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), 1).close()
    names = {t.name for t in threading.enumerate()}
    assert not names & {"stagewidget-service", "stagewidget-store-writer",
                        "stagewidget-store-sweep"}


def test_a_service_starts_once_and_stops_any_number_of_times() -> None:
    service = sw.serve(port=0)
    try:
        with pytest.raises(sw.AlreadyStarted, match="this service was already started"):
            service.start()
        with pytest.raises(RuntimeError):  # what it raised before, still caught
            service.start()
    finally:
        service.stop()
    service.stop()  # idempotent
    service.registry.close()  # idempotent too, after stop() closed it
    names = {t.name for t in threading.enumerate()}
    assert "stagewidget-service" not in names


def test_stop_and_close_are_idempotent_on_every_store(make_service, store_kind) -> None:
    service = make_service(store_kind)
    service.stop()
    service.stop()
    service.registry.close()
    service.registry.store.close()
    service.registry.store.close()
    with pytest.raises(sw.AlreadyStarted):  # a stopped service is not started again either
        service.start()


def test_the_api_document_state_enums_are_the_status_enums(client) -> None:
    from stagewidget.service.registry import LOST

    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    run_states = {state.value for state in sw.RunState} | {LOST}
    assert set(schemas["RunStatus"]["properties"]["state"]["enum"]) == run_states
    assert set(schemas["RunSummary"]["properties"]["state"]["enum"]) == run_states
    assert set(schemas["StageStatus"]["properties"]["state"]["enum"]) == {
        state.value for state in sw.StageState}


def test_the_api_document_lists_every_field_of_the_status_json(client) -> None:
    from stagewidget.service.http import SUMMARY_KEYS
    from stagewidget.status import Level

    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    run = sw.RunStatus(run_id=str(uuid.uuid4()), pipeline="p",
                       stages=(sw.StageStatus(name="s", inner=(Level("inner", 1),)),),
                       error=sw.ErrorInfo.from_exception(ValueError("no")))
    document = run.to_dict()
    assert set(schemas["RunStatus"]["properties"]) == set(document) | {"queue_position"}
    assert set(schemas["StageStatus"]["properties"]) == set(document["stages"][0])
    assert set(schemas["Level"]["properties"]) == set(document["stages"][0]["inner"][0])
    assert set(schemas["Error"]["properties"]) == set(document["error"])
    assert set(schemas["RunSummary"]["properties"]) == set(SUMMARY_KEYS) | {"url"}


def test_served_statuses_validate_against_the_api_document(client) -> None:
    import jsonschema

    document = client.get("/openapi.json").json()

    def check(instance: object, schema: str) -> None:
        jsonschema.validate(instance, {"$ref": f"#/components/schemas/{schema}",
                                       "components": document["components"]},
                            cls=jsonschema.Draft202012Validator)

    done = start(client, "square", {"n": 5}, Prefer="wait=20")
    failed = start(client, "fails", {"n": 1}, Prefer="wait=20")
    assert (done.status_code, failed.status_code) == (200, 200)
    assert failed.json()["state"] == "failed"
    for reply in (done, failed):
        check(reply.json(), "RunStatus")
        check(client.get(f"/api/runs/{reply.json()['run_id']}").json(), "RunStatus")
    page = client.get("/api/runs").json()
    check(page, "RunsPage")
    assert {run["state"] for run in page["runs"]} == {"succeeded", "failed"}
    with pytest.raises(jsonschema.ValidationError):  # the schema does check: a bad state
        check({**done.json(), "state": "exploded"}, "RunStatus")
