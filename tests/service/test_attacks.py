"""Attacks on the status service from a browser's position (issue 14's red team): a page
of another origin, a DNS-rebound name, and too many streams. Real served apps, real
sockets, httpx.
"""

from __future__ import annotations

import uuid

import harness
import httpx
import pytest
import svc_pipelines
from harness import auth, read_events, wait_until

from stagewidget.errors import ConfigError
from stagewidget.service.middleware import is_loopback_host

pytestmark = pytest.mark.integration

make_service, prefix = harness.make_service, harness.prefix
WAIT_S = 20.0
PROBLEM = "application/problem+json"


# -- DNS rebinding -----------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/runs/x", "/static/app.js", "/api/runs",
                                  "/api/health", "/api/session"])
def test_a_rebound_host_name_is_refused_on_the_page_and_the_api(make_service, path) -> None:
    # evil.example re-pointed at 127.0.0.1: same-origin for the browser, so it could read
    # the replies; its Host header gives it away. Without a token the API is open.
    service = make_service("memory", token="")
    reply = httpx.get(service.url + path, headers={"Host": f"evil.example:{service.port}"},
                      timeout=WAIT_S)
    assert reply.status_code == 400
    assert reply.headers["content-type"] == PROBLEM
    assert "evil.example" in reply.json()["detail"]
    assert "loopback" in reply.json()["detail"]


def test_a_rebound_host_name_cannot_start_a_run(make_service) -> None:
    service = make_service("memory", token="")
    reply = httpx.post(f"{service.url}/api/pipelines/square/runs", json=3,
                       headers={"Host": f"evil.example:{service.port}"}, timeout=WAIT_S)
    assert reply.status_code == 400
    assert httpx.get(f"{service.url}/api/runs", timeout=WAIT_S).json()["total"] == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8750", "localhost:1",
                                  "LOCALHOST.", "app.localhost:8", "[::1]:8750", "[::1]",
                                  "127.9.9.9"])
def test_loopback_names_are_served(host) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8750", "10.0.0.1:8750",
                                  "localhost.evil.example", "127.0.0.1.evil.example",
                                  "[::2]:1", "0.0.0.0:8750", "::1", ""])
def test_other_names_are_not(host) -> None:
    assert not is_loopback_host(host)


def test_loopback_names_reach_the_service(make_service) -> None:
    service = make_service("memory")
    for host in ("localhost", f"127.0.0.1:{service.port}", f"[::1]:{service.port}"):
        reply = httpx.get(f"{service.url}/api/runs", headers={"Host": host, **auth(service)},
                          timeout=WAIT_S)
        assert reply.status_code == 200, (host, reply.text)


def test_json_replies_and_problems_are_never_sniffed_as_something_else(make_service) -> None:
    service = make_service("memory")
    for path, status in (("/api/runs", 200), (f"/api/runs/{uuid.uuid4()}", 404)):
        reply = httpx.get(f"{service.url}{path}", headers=auth(service), timeout=WAIT_S)
        assert reply.status_code == status
        assert reply.headers["x-content-type-options"] == "nosniff", path
    assert httpx.get(f"{service.url}/api/runs", timeout=WAIT_S).headers[
        "x-content-type-options"] == "nosniff"  # the 401 too


def test_allowed_hosts_names_a_local_proxys_public_name(make_service) -> None:
    service = make_service("memory", allowed_hosts=("Dash.Example.org",))
    for host, status in (("dash.example.org:443", 200), ("dash.example.org.", 200),
                         ("evil.example", 400)):
        reply = httpx.get(f"{service.url}/api/runs", headers={"Host": host, **auth(service)},
                          timeout=WAIT_S)
        assert reply.status_code == status, (host, reply.text)
    assert "allowed_hosts" in reply.json()["detail"]
    for bad in ("dash.example.org", ["dash.example.org:443"], [""]):
        with pytest.raises(ConfigError, match="allowed_hosts must be a list of host names"):
            make_service("memory", allowed_hosts=bad)


def test_a_service_bound_beyond_loopback_takes_any_host(make_service) -> None:
    # Reached by its machine's name there; its token guards it.
    service = make_service("memory", host="0.0.0.0")
    reply = httpx.get(f"http://127.0.0.1:{service.port}/api/runs",
                      headers={"Host": "build-box.lan", **auth(service)}, timeout=WAIT_S)
    assert reply.status_code == 200


# -- cross-site requests to a service without a token --------------------------------
@pytest.mark.parametrize("origin", ["http://127.0.0.1:1", "null", "http://evil.example"])
@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded"])
def test_another_pages_post_cannot_start_a_run_on_a_service_without_token(
        make_service, origin, kind) -> None:
    # A form post or a no-cors fetch with an empty body needs no preflight.
    service = make_service("memory", token="")
    with httpx.Client(base_url=service.url, timeout=WAIT_S) as page:
        reply = page.post("/api/pipelines/hello/runs", content=b"",
                          headers={"Origin": origin, "Content-Type": kind})
        assert reply.status_code == 403, reply.text
        assert reply.headers["content-type"] == PROBLEM
        assert origin in reply.json()["detail"]
        assert page.get("/api/runs").json()["total"] == 0


def test_another_pages_retry_and_cancel_are_refused_on_a_service_without_token(
        make_service) -> None:
    service = make_service("memory", token="")
    with httpx.Client(base_url=service.url, timeout=WAIT_S) as client:
        run_id = client.post("/api/pipelines/fails/runs", json={}).json()["run_id"]
        harness.wait_until(lambda: client.get(f"/api/runs/{run_id}").json()["state"]
                           == "failed", what="the run to fail")
        evil = {"Origin": "http://127.0.0.1:9"}
        assert client.post(f"/api/runs/{run_id}/retry", headers=evil).status_code == 403
        assert client.delete(f"/api/runs/{run_id}", headers=evil).status_code == 403
        assert client.get("/api/runs").json()["total"] == 1


def test_the_services_own_page_scripts_and_cors_origins_may_change_runs(make_service
                                                                       ) -> None:
    service = make_service("memory", token="", cors_origins=("http://127.0.0.1:3000",))
    with httpx.Client(base_url=service.url, timeout=WAIT_S) as client:
        for headers in ({"Origin": service.url}, {"Origin": "http://127.0.0.1:3000"}, {}):
            reply = client.post("/api/pipelines/square/runs", json={"n": 2}, headers=headers)
            assert reply.status_code == 202, (headers, reply.text)


# -- event streams --------------------------------------------------------------------
def test_event_streams_beyond_max_streams_are_a_429_and_a_closed_one_frees_its_place(
        make_service) -> None:
    service = make_service("memory", max_streams=2)
    gate = f"gate-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        run_id = client.post("/api/pipelines/gated/runs", json={"gate": gate}).json()["run_id"]
        with client.stream("GET", "/api/events") as one, \
                client.stream("GET", f"/api/runs/{run_id}/events") as two:
            assert one.status_code == two.status_code == 200
            for path in ("/api/events", f"/api/runs/{run_id}/events"):
                refused = client.get(path)
                assert refused.status_code == 429
                assert refused.headers["content-type"] == PROBLEM
                assert refused.headers["retry-after"].isdigit()
                assert "max_streams" in refused.json()["detail"]
            assert client.head("/api/events").status_code == 200  # no stream: not counted
            paths = client.get("/openapi.json").json()["paths"]
            for path in ("/api/events", "/api/runs/{run_id}/events"):
                assert "429" in paths[path]["get"]["responses"]
            assert client.get("/api/runs").status_code == 200
            # a stream that ends (its run did) gives its place back
            svc_pipelines.gate(gate).set()
            assert [e for e, _ in read_events(two, timeout=WAIT_S)][-1] == "end"

        def accepted() -> bool:  # the closed list stream's place, once the server saw it go
            with client.stream("GET", "/api/events") as again, \
                    client.stream("GET", "/api/events") as more:
                return again.status_code == more.status_code == 200
        wait_until(accepted, what="both places to be given back")


def test_max_streams_must_be_a_positive_int(make_service) -> None:
    for bad in (0, -1, 1.5, "10"):
        with pytest.raises(ConfigError, match="max_streams must be an int of at least 1"):
            make_service("memory", max_streams=bad)
