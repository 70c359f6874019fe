"""Runs whose result or metrics JSON cannot hold still end in the store as they ended.

Each run is served by a real service on each store (memory, a real redis-server, SQLite): the
final status must be recorded (succeeded), ``Prefer: wait`` must answer 200, and the
events stream must end.
"""

from __future__ import annotations

from collections.abc import Iterator

import harness
import httpx
import pytest
import svc_pipelines
from conftest import WAIT_S
from harness import auth, read_events

from stagewidget.service import Service

pytestmark = pytest.mark.integration

redis_server, store_kind, prefix = harness.redis_server, harness.store_kind, harness.prefix


@pytest.fixture
def client(request, store_kind, prefix) -> Iterator[httpx.Client]:
    """A real service of the hostile pipeline on the memory, Redis or SQLite store."""
    service = Service([svc_pipelines.hostile], port=0, adopt=False,
                      **harness.store_options(request, store_kind, prefix)).start()
    try:
        with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as http:
            yield http
    finally:
        service.stop()

# kind -> (result, result_is_repr, result_unavailable) expected in the store
EXPECTED = {
    "big-int": ("9.136930e+16901", True, None),
    "bad-repr-element": ("[1, <_BadRepr object: repr() failed: ValueError: no repr for you>]",
                         True, None),
    "deep": ("[[[[[...]]]]]", True, None),
    "unrepresentable": (None, False,
                        "repr() of the result (a _BadRepr) failed: ValueError: no repr for you"),
    "big-metric": ("reported", False, None),
    "big-range": (1000, False, None),
}


def finish(client: httpx.Client, kind: str) -> dict:
    reply = client.post("/api/pipelines/hostile/runs", json={"kind": kind},
                        headers={"Prefer": "wait=10"})
    assert reply.status_code == 200, reply.text  # 202 would mean the end was never recorded
    return reply.json()


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_run_with_a_result_json_cannot_hold_ends_succeeded_in_the_store(client, kind) -> None:
    result, is_repr, unavailable = EXPECTED[kind]
    body = finish(client, kind)
    assert body["state"] == "succeeded"
    stored = client.get(f"/api/runs/{body['run_id']}").json()
    assert stored["state"] == "succeeded"
    assert (stored["result"], stored["result_is_repr"], stored["result_unavailable"]) == (
        result, is_repr, unavailable)
    with client.stream("GET", f"/api/runs/{body['run_id']}/events") as stream:
        events = list(read_events(stream))
    assert events[-1] == ("end", {"state": "succeeded"})


def test_metric_past_the_int_digit_limit_is_recorded_as_a_string(client) -> None:
    body = finish(client, "big-metric")
    stage = client.get(f"/api/runs/{body['run_id']}").json()["stages"][0]
    assert stage["metrics"] == {"big": "1.000000e+5000"}
    assert stage["history"] == {"big": [None]}  # past float range: a gap in the chart


def test_track_over_a_range_past_ssize_t_counts_in_the_store(client) -> None:
    body = finish(client, "big-range")
    stage = client.get(f"/api/runs/{body['run_id']}").json()["stages"][0]
    assert stage["total"] == 10**30
    assert stage["state"] == "succeeded"
