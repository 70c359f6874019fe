"""Browser sessions of the status service (issue 14): the token is exchanged for a session
cookie at login; requests the cookie authenticates that change state also need the
service's Origin and the session's CSRF token. Real served apps, real sockets, httpx.
"""

from __future__ import annotations

import logging
import uuid

import harness
import httpx
import pytest
import svc_pipelines
from conftest import FakeClock
from harness import auth, wait_until

from stagewidget.service.session import LoginLimiter, SessionAuth, SessionStore, normal_origin

pytestmark = pytest.mark.integration

make_service, prefix = harness.make_service, harness.prefix
WAIT_S = 20.0
PROBLEM = "application/problem+json"


@pytest.fixture
def service(make_service):
    return make_service("memory")


@pytest.fixture
def browser(service):
    """A client with no token: it logs in like the page does."""
    with httpx.Client(base_url=service.url, timeout=WAIT_S) as client:
        yield client


def login(browser: httpx.Client, token: str) -> str:
    """Log ``browser`` in; return the CSRF token."""
    reply = browser.post("/api/login", json={"token": token})
    assert reply.status_code == 200, reply.text
    return reply.json()["csrf_token"]


def start_gated(service) -> tuple[str, str]:
    """Start a run that waits on a gate (with the bearer token); return its id and gate."""
    gate = f"gate-{uuid.uuid4().hex[:8]}"
    reply = httpx.post(f"{service.url}/api/pipelines/gated/runs", json={"gate": gate},
                       headers=auth(service), timeout=WAIT_S)
    assert reply.status_code == 202, reply.text
    return reply.json()["run_id"], gate


def state_of(service, run_id: str) -> str:
    return httpx.get(f"{service.url}/api/runs/{run_id}", headers=auth(service),
                     timeout=WAIT_S).json()["state"]


# -- login -------------------------------------------------------------------------------

def test_login_sets_a_strict_httponly_session_cookie_that_is_not_the_token(service,
                                                                            browser) -> None:
    reply = browser.post("/api/login", json={"token": service.token})
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    cookies = reply.headers.get_list("set-cookie")
    assert len(cookies) == 1
    name_value, *attributes = [part.strip() for part in cookies[0].split(";")]
    name, _, value = name_value.partition("=")
    assert name == f"stagewidget_session_{service.port}"
    assert len(value) >= 32 and service.token not in cookies[0]
    assert sorted(a.lower() for a in attributes) == ["httponly", "path=/", "samesite=strict"]
    assert service.token not in reply.text
    csrf = reply.json()["csrf_token"]
    assert len(csrf) >= 32 and csrf != value and csrf != service.token


def test_a_form_login_redirects_to_the_page_with_the_cookie(service, browser) -> None:
    reply = browser.post("/api/login", data={"token": service.token})
    assert reply.status_code == 303 and reply.headers["location"] == "/"
    assert "HttpOnly" in reply.headers["set-cookie"]
    assert browser.get("/api/session").json()["session"] is True


def test_a_wrong_token_is_a_401_and_sets_no_cookie(service, browser) -> None:
    reply = browser.post("/api/login", json={"token": service.token + "x"})
    assert reply.status_code == 401 and reply.headers["content-type"] == PROBLEM
    assert "set-cookie" not in reply.headers
    assert browser.get("/api/runs").status_code == 401
    assert browser.get("/api/session").json() == {
        "token_required": True, "session": False, "login": True, "csrf_header": "X-CSRF-Token"}


@pytest.mark.parametrize("body, kind, status", [
    (b'{"token": 3}', "application/json", 400),
    (b"[]", "application/json", 400),
    (b"{", "application/json", 400),
    (b"token=", "application/x-www-form-urlencoded", 400),
    (b"secret", "text/plain", 415),
])
def test_a_malformed_login_says_what_is_wrong(browser, body, kind, status) -> None:
    reply = browser.post("/api/login", content=body, headers={"Content-Type": kind})
    assert reply.status_code == status and reply.headers["content-type"] == PROBLEM
    assert "token" in reply.json()["detail"] and "set-cookie" not in reply.headers


def test_a_token_in_the_login_url_is_refused(service, browser) -> None:
    reply = browser.post("/api/login", params={"token": service.token},
                         json={"token": service.token})
    assert reply.status_code == 400 and "never in the URL" in reply.json()["detail"]
    assert "set-cookie" not in reply.headers


def test_a_login_from_another_origin_is_refused(service, browser) -> None:
    other = f"http://127.0.0.1:{service.port + 1}"
    reply = browser.post("/api/login", json={"token": service.token},
                         headers={"Origin": other})
    assert reply.status_code == 403 and "set-cookie" not in reply.headers


def test_repeated_wrong_tokens_are_answered_429_even_for_the_right_one(service,
                                                                        browser) -> None:
    for _ in range(5):
        assert browser.post("/api/login", json={"token": "wrong"}).status_code == 401
    limited = browser.post("/api/login", json={"token": service.token})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "set-cookie" not in limited.headers
    assert browser.get("/api/runs", headers=auth(service)).status_code == 200  # bearer: as before


# -- the session cookie ------------------------------------------------------------------

def test_a_session_reads_runs_and_its_csrf_token(service, browser) -> None:
    run_id, gate = start_gated(service)
    csrf = login(browser, service.token)
    listed = browser.get("/api/runs")
    assert listed.status_code == 200 and listed.json()["runs"][0]["run_id"] == run_id
    assert browser.get(f"/api/runs/{run_id}").status_code == 200
    assert browser.get("/api/session").json() == {
        "token_required": True, "session": True, "csrf_token": csrf,
        "idle_timeout_s": 12 * 3600.0, "login": True, "csrf_header": "X-CSRF-Token"}
    svc_pipelines.gate(gate).set()


@pytest.mark.parametrize("case", ["no origin", "other port", "no csrf", "wrong csrf"])
def test_a_cookie_cancel_without_origin_and_csrf_is_a_403_and_cancels_nothing(
        service, browser, case) -> None:
    run_id, gate = start_gated(service)
    csrf = login(browser, service.token)
    own = f"http://127.0.0.1:{service.port}"
    headers = {"no origin": {"X-CSRF-Token": csrf},
               "other port": {"Origin": f"http://127.0.0.1:{service.port + 1}",
                              "X-CSRF-Token": csrf},
               "no csrf": {"Origin": own},
               "wrong csrf": {"Origin": own, "X-CSRF-Token": csrf[:-1] + "x"}}[case]
    refused = browser.delete(f"/api/runs/{run_id}", headers=headers)
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == PROBLEM
    slug = {"no origin": "origin-missing", "other port": "origin-mismatch",
            "no csrf": "csrf-token-missing", "wrong csrf": "csrf-token-mismatch"}[case]
    assert refused.json()["type"] == f"urn:stagewidget:problem:{slug}"
    started = browser.post("/api/pipelines/square/runs", json={"n": 3}, headers=headers)
    assert started.status_code == 403
    assert state_of(service, run_id) == "running"
    assert browser.get("/api/runs").json()["total"] == 1  # the POST started nothing
    svc_pipelines.gate(gate).set()


def test_a_cookie_cancel_with_the_origin_and_csrf_token_cancels(service, browser) -> None:
    run_id, _ = start_gated(service)
    csrf = login(browser, service.token)
    headers = {"Origin": f"http://127.0.0.1:{service.port}", "X-CSRF-Token": csrf}
    reply = browser.delete(f"/api/runs/{run_id}", headers=headers)
    assert reply.status_code == 202, reply.text
    wait_until(lambda: state_of(service, run_id) == "cancelled", what="the cancel")
    started = browser.post("/api/pipelines/square/runs", json={"n": 3}, headers=headers)
    assert started.status_code == 202, started.text


def test_bearer_clients_need_no_origin_nor_csrf_token(service) -> None:
    run_id, _ = start_gated(service)
    reply = httpx.delete(f"{service.url}/api/runs/{run_id}", headers=auth(service),
                         timeout=WAIT_S)
    assert reply.status_code == 202, reply.text


def test_logout_ends_the_session(service, browser) -> None:
    csrf = login(browser, service.token)
    cookie = browser.cookies.get(f"stagewidget_session_{service.port}")
    headers = {"Origin": f"http://127.0.0.1:{service.port}", "X-CSRF-Token": csrf}
    assert browser.post("/api/logout").status_code == 403  # a state change: CSRF checked
    out = browser.post("/api/logout", headers=headers)
    assert out.status_code == 204 and "max-age=0" in out.headers["set-cookie"].lower()
    assert browser.get("/api/session").json()["session"] is False
    # The old cookie, replayed, is dead on the server too.
    with httpx.Client(base_url=service.url, timeout=WAIT_S) as replay:
        replay.cookies.set(f"stagewidget_session_{service.port}", cookie)
        assert replay.get("/api/runs").status_code == 401


def test_a_cookie_of_another_port_or_a_forged_one_is_no_session(service, browser) -> None:
    login(browser, service.token)
    cookie = browser.cookies.get(f"stagewidget_session_{service.port}")
    with httpx.Client(base_url=service.url, timeout=WAIT_S) as other:
        other.cookies.set(f"stagewidget_session_{service.port + 1}", cookie)
        assert other.get("/api/runs").status_code == 401
        other.cookies.set(f"stagewidget_session_{service.port}", "forged")
        assert other.get("/api/runs").status_code == 401


# -- the page ----------------------------------------------------------------------------

def test_the_page_answers_without_the_token_and_holds_no_run_data(service, browser) -> None:
    run_id, gate = start_gated(service)
    for path in ("/", f"/runs/{run_id}", "/static/index.html"):
        page = browser.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert "stagewidget dashboard" in page.text and 'action="/api/login"' in page.text
        assert run_id not in page.text and service.token not in page.text
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    icon = browser.get("/static/favicon.svg")  # the browser asks for it before login
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")
    assert browser.get("/static/nothing.js").status_code == 404
    assert browser.get("/api/runs").status_code == 401
    svc_pipelines.gate(gate).set()


def test_the_access_log_never_holds_the_token(make_service, caplog) -> None:
    caplog.set_level(logging.INFO, logger="stagewidget.service.access")
    service = make_service("memory", access_log=True)
    with httpx.Client(base_url=service.url, timeout=WAIT_S) as browser:
        login(browser, service.token)
        browser.post("/api/login", data={"token": service.token})
        browser.post("/api/login", params={"token": service.token})
        browser.get("/api/runs", params={"access_token": service.token})
        browser.get("/api/session")

    def logged() -> list[str]:
        lines = [r.getMessage() for r in caplog.records
                 if r.name == "stagewidget.service.access"]
        return lines if len(lines) == 5 else []
    lines = wait_until(logged, what="the five access log lines")
    assert all(service.token not in line for line in lines), lines
    assert '"POST /api/login?token=[redacted] HTTP/1.1" 400' in lines[2]


def test_without_a_token_there_is_nothing_to_log_in_to(make_service) -> None:
    service = make_service("memory", token="")
    with httpx.Client(base_url=service.url, timeout=WAIT_S) as browser:
        assert browser.get("/api/session").json() == {
            "token_required": False, "session": False, "login": False,
            "csrf_header": "X-CSRF-Token"}
        assert browser.post("/api/login", json={"token": "x"}).status_code == 409


# -- the session store and the limiter, on a fake clock ------------------------------------

def test_a_session_ends_after_its_idle_time_and_use_keeps_it_alive() -> None:
    clock = FakeClock()
    sessions = SessionStore(idle_s=100, clock=clock)
    kept, _ = sessions.create()
    idle, _ = sessions.create()
    clock.tick(60)
    assert sessions.get(kept) is not None
    clock.tick(60)
    assert sessions.get(kept) is not None and sessions.get(idle) is None
    assert len(sessions) == 1


def test_the_least_recently_used_session_ends_when_the_store_is_full() -> None:
    clock = FakeClock()
    sessions = SessionStore(max_sessions=2, clock=clock)
    first, _ = sessions.create()
    second, _ = sessions.create()
    clock.tick(1)
    sessions.get(first)
    sessions.create()
    assert sessions.get(first) is not None and sessions.get(second) is None
    assert len(sessions) == 2


def test_bad_session_settings_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="session_idle_s must be a positive"):
        SessionStore(idle_s=0)
    with pytest.raises(ValueError, match="max_sessions must be an int of at least 1"):
        SessionStore(max_sessions=0)


def test_login_failures_age_out_of_the_window() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(max_failures=2, window_s=60, clock=clock)
    limiter.failed("a")
    clock.tick(30)
    limiter.failed("a")
    assert limiter.retry_after_s("a") == 30 and limiter.retry_after_s("b") == 0
    clock.tick(30)
    assert limiter.retry_after_s("a") == 0


def test_the_cookie_is_secure_only_when_served_over_https() -> None:
    plain = SessionAuth._cookie({"scheme": "http"}, "stagewidget_session_1", "abc")
    secure = SessionAuth._cookie({"scheme": "https"}, "stagewidget_session_1", "abc")
    assert "Secure" not in plain and secure.endswith("; Secure")


@pytest.mark.parametrize("origin, normal", [
    ("http://127.0.0.1:8750", "http://127.0.0.1:8750"),
    ("HTTP://LocalHost", "http://localhost:80"),
    ("https://example.org", "https://example.org:443"),
    ("http://[::1]:8750", "http://[::1]:8750"),
    ("null", None), ("http://127.0.0.1:99999", None), ("file:///etc", None),
])
def test_origins_are_compared_with_the_port_spelled_out(origin, normal) -> None:
    assert normal_origin(origin) == normal
