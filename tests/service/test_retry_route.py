"""POST /api/runs/{id}/retry: run.retry() of a failed or cancelled run, by the process that
ran it (it alone holds the run's input)."""

from __future__ import annotations

import socket
import uuid

import harness
import httpx
import pytest
import svc_pipelines
from conftest import WAIT_S
from harness import auth, wait_until

pytestmark = pytest.mark.integration

redis_server, prefix, make_service = harness.redis_server, harness.prefix, harness.make_service
service_process, sqlite_process = harness.service_process, harness.sqlite_process

PROBLEM = "application/problem+json"


@pytest.fixture
def client(make_service):
    service = make_service("memory")
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as http:
        yield http


def state_of(client: httpx.Client, run_id: str) -> str:
    return client.get(f"/api/runs/{run_id}").json()["state"]


def test_a_cancelled_run_is_retried_with_its_input_and_the_retry_succeeds(client) -> None:
    gate = f"gate-{uuid.uuid4().hex[:8]}"
    run_id = client.post("/api/pipelines/gated/runs", json={"gate": gate}).json()["run_id"]
    assert client.delete(f"/api/runs/{run_id}").status_code == 202
    wait_until(lambda: state_of(client, run_id) == "cancelled", what="the cancel")
    reply = client.post(f"/api/runs/{run_id}/retry")
    assert reply.status_code == 202, reply.text
    new = reply.json()
    assert new["retry_of"] == run_id and new["run_id"] != run_id
    assert new["state"] in ("pending", "running")
    assert reply.headers["location"] == f"/api/runs/{new['run_id']}"
    listed = client.get("/api/runs", params={"pipeline": "gated"}).json()["runs"]
    assert new["run_id"] in [run["run_id"] for run in listed]  # registered like any run
    svc_pipelines.gate(gate).set()
    wait_until(lambda: state_of(client, new["run_id"]) == "succeeded", what="the retry")
    assert client.get(reply.headers["location"]).json()["result"] == gate  # its input
    again = client.post(f"/api/runs/{run_id}/retry")
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM
    assert again.json()["detail"] == (f"run {run_id} was already retried as run "
                                      f"{new['run_id']}")


def test_a_failed_run_is_retried_from_its_failed_stage(client) -> None:
    failed = client.post("/api/pipelines/fails/runs", json={"row": 7},
                         headers={"Prefer": "wait=20"}).json()
    assert failed["state"] == "failed"
    reply = client.post(f"/api/runs/{failed['run_id']}/retry")
    assert reply.status_code == 202
    retry_id = reply.json()["run_id"]
    wait_until(lambda: state_of(client, retry_id) == "failed", what="the retry to end")
    error = client.get(f"/api/runs/{retry_id}").json()["error"]
    assert error["message"] == "row 7 is malformed"  # the same input, the same stage


def test_a_run_that_did_not_fail_or_was_never_known_cannot_be_retried(client) -> None:
    done = client.post("/api/pipelines/hello/runs", headers={"Prefer": "wait=20"}).json()
    assert done["state"] == "succeeded"
    reply = client.post(f"/api/runs/{done['run_id']}/retry")
    assert reply.status_code == 409 and reply.headers["content-type"] == PROBLEM
    assert reply.json()["detail"] == (f"run {done['run_id']} is succeeded; only a failed "
                                      "or cancelled run can be retried")
    unknown = client.post(f"/api/runs/{uuid.uuid4()}/retry")
    assert unknown.status_code == 404 and unknown.json()["type"].endswith(":run-not-found")
    assert client.get(f"/api/runs/{done['run_id']}/retry").status_code == 405


@pytest.mark.parametrize("processes", ["service_process", "sqlite_process"],
                         ids=["redis", "sqlite"])
def test_only_the_process_that_ran_it_retries_a_run_and_others_name_it(processes, request
                                                                        ) -> None:
    make = request.getfixturevalue(processes)
    owner, other = make(), make()
    failed = owner.http.post("/api/pipelines/fails/runs", json={"row": 2},
                             headers={"Prefer": "wait=20"}).json()
    assert failed["state"] == "failed"
    refused = other.http.post(f"/api/runs/{failed['run_id']}/retry")
    assert refused.status_code == 409 and refused.headers["content-type"] == PROBLEM
    detail = refused.json()["detail"]
    assert f"is owned by process {socket.gethostname()}:{owner.proc.pid}," in detail
    assert detail.endswith(f"retry it there (this is process "
                           f"{socket.gethostname()}:{other.proc.pid})")
    accepted = owner.http.post(f"/api/runs/{failed['run_id']}/retry")
    assert accepted.status_code == 202 and accepted.json()["retry_of"] == failed["run_id"]
    seen = other.http.get(accepted.headers["location"])  # published through the store
    assert seen.status_code == 200 and seen.json()["retry_of"] == failed["run_id"]
