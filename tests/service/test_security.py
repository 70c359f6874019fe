"""The service against hostile or careless clients: real sockets, real servers (issue 10).

Request heads are bounded in size and time before anything else; the token is required by
default and checked before routing; failed runs keep the server's tracebacks to itself;
odd input (lone surrogates, Unicode digits, huge numbers) gets an answer, never a 500;
the CLI logs one line per request without the token.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import subprocess
import sys
import threading
import uuid

import harness
import httpx
import pytest
import svc_pipelines
from conftest import WAIT_S
from harness import HERE, auth, free_port, read_events, wait_until

import stagewidget as sw

pytestmark = pytest.mark.integration

redis_server, store_kind, prefix = harness.redis_server, harness.store_kind, harness.prefix
make_service, service, client = harness.make_service, harness.service, harness.client
service_process = harness.service_process

PROBLEM = "application/problem+json"


def open_gate(prefix: str = "gate") -> str:
    """A gate name whose gated run ends at once."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    svc_pipelines.gate(name).set()
    return name


def reply_or_close(sock: socket.socket) -> bytes:
    """What the server sends on ``sock`` before it closes it (b"" if it just closes)."""
    sock.settimeout(WAIT_S)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:  # closed with our unread bytes still queued: a refusal too
        pass
    return received


# -- item 7: lone surrogates -----------------------------------------------------------

def test_a_lone_surrogate_in_a_result_is_escaped_json_on_every_route(client) -> None:
    name = open_gate("\udcff")  # as os.fsdecode gives for a non-UTF-8 file name
    body = f'{{"gate": "\\udcff{name[1:]}"}}'.encode("ascii")
    waited = client.post("/api/pipelines/gated/runs", content=body,
                         headers={"Content-Type": "application/json", "Prefer": "wait=20"})
    assert waited.status_code == 200, waited.text
    assert waited.json()["result"] == name and b'"\\udcff' in waited.content
    run_id = waited.json()["run_id"]
    got = client.get(f"/api/runs/{run_id}")
    assert got.status_code == 200 and got.json()["result"] == name
    with client.stream("GET", f"/api/runs/{run_id}/events") as stream:
        events = list(read_events(stream))
    assert events[0][1]["result"] == name and events[-1] == ("end", {"state": "succeeded"})
    listed = client.get("/api/runs", params={"pipeline": "gated"}).json()
    assert [r["run_id"] for r in listed["runs"]] == [run_id]  # the POST ran it once


def test_a_lone_surrogate_in_an_error_message_is_escaped_json(client) -> None:
    reply = client.post("/api/pipelines/fails/runs", content=b'{"row": "\\udcff"}',
                        headers={"Content-Type": "application/json", "Prefer": "wait=20"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["error"]["message"] == "row \udcff is malformed"
    listed = client.get("/api/runs").json()["runs"]
    assert listed[0]["error"]["message"] == "row \udcff is malformed"


# -- item 8: Unicode digits, long numbers -------------------------------------------------

@pytest.mark.parametrize("store_kind", ["memory"])
@pytest.mark.parametrize("query", [{"offset": "\u00b2"}, {"limit": "\u00b3"},
                                   {"offset": "9" * 5000}, {"limit": "\u0661"}])
def test_a_query_number_in_other_than_a_few_ascii_digits_is_a_400(client, query) -> None:
    reply = client.get("/api/runs", params=query)
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"] == PROBLEM
    assert "in ASCII digits" in reply.json()["detail"]
    assert len(reply.content) < 1000  # the 5,000 digits are not echoed back


@pytest.mark.parametrize("store_kind", ["memory"])
def test_a_prefer_wait_in_unicode_digits_is_ignored(client) -> None:
    reply = client.post("/api/pipelines/gated/runs", json={"gate": open_gate()},
                        headers={"Prefer": b"wait=\xb2"})  # latin-1 '²', as sent on the wire
    assert reply.status_code == 202, reply.text
    assert "preference-applied" not in reply.headers
    assert client.get("/api/runs").json()["total"] == 1


@pytest.mark.parametrize("store_kind", ["memory"])
def test_a_prefer_wait_of_thousands_of_digits_is_capped(client) -> None:
    reply = client.post("/api/pipelines/gated/runs", json={"gate": open_gate()},
                        headers={"Prefer": "wait=" + "9" * 5000})
    assert reply.status_code == 200 and reply.headers["preference-applied"] == "wait=300"


# -- item 14: HEAD of an event stream ----------------------------------------------------

def test_head_of_a_running_runs_events_answers_the_headers_at_once(client) -> None:
    gate = f"gate-{uuid.uuid4().hex[:8]}"
    run_id = client.post("/api/pipelines/gated/runs", json={"gate": gate}).json()["run_id"]
    try:
        head = client.head(f"/api/runs/{run_id}/events")  # before: held until the run ended
        assert head.status_code == 200
        assert head.headers["content-type"].startswith("text/event-stream")
        assert head.content == b""
        assert client.head(f"/api/runs/{uuid.uuid4()}/events").status_code == 404
        # answered while the run goes on (it may not have left pending yet)
        assert client.get(f"/api/runs/{run_id}").json()["state"] in ("pending", "running")
    finally:
        svc_pipelines.gate(gate).set()


# -- item 15: request heads bounded in size and time, with either parser ------------------

# Every head test runs on both parsers the service can pick (httptools when installed).
PARSERS = [pytest.param("h11"), pytest.param("httptools", marks=pytest.mark.skipif(
    importlib.util.find_spec("httptools") is None, reason="httptools is not installed"))]


@pytest.mark.parametrize("store_kind", ["memory"])
@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("how", ["whole", "trickled", "pipelined"])
def test_a_100_kb_request_head_is_refused_while_another_connection_works(
        make_service, store_kind, parser, how) -> None:
    service = make_service(store_kind, http=parser)
    assert service.http == parser
    head = (b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 100_000
            + b"\r\n\r\n")
    if how == "pipelined":  # after a small request, in the same write
        head = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + head
    with socket.create_connection(("127.0.0.1", service.port), WAIT_S) as big, \
            httpx.Client(base_url=service.url, timeout=WAIT_S) as other:
        try:
            if how == "whole":
                big.sendall(head)
            else:
                for start in range(0, len(head), 4096):
                    big.sendall(head[start:start + 4096])
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before all was sent
        assert other.get("/api/health").status_code == 200
        answer = reply_or_close(big)
    if how == "pipelined":  # the first request is answered, the big head is not
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        assert answer.count(b"HTTP/1.1 ") == 1 + answer.count(b"HTTP/1.1 431 "), answer
    else:
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"ok" not in answer


@pytest.mark.parametrize("store_kind", ["memory"])
@pytest.mark.parametrize("parser", PARSERS)
def test_the_head_limit_is_configurable(make_service, store_kind, parser) -> None:
    service = make_service(store_kind, max_head_bytes=4096, http=parser)
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        assert client.get("/api/runs", headers={"X-Pad": "a" * 3000}).status_code == 200
        try:
            over: int | str = client.get("/api/runs", headers={"X-Pad": "a" * 5000}).status_code
        except httpx.TransportError:
            over = "closed"
        assert over in (431, "closed")


@pytest.mark.parametrize("store_kind", ["memory"])
@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("when", ["first request", "after a kept-alive request"])
def test_a_slow_request_head_is_closed_after_the_head_timeout(make_service, store_kind,
                                                              parser, when) -> None:
    service = make_service(store_kind, head_timeout_s=0.5, http=parser)
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", service.port), WAIT_S) as slow:
        if when != "first request":
            slow.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            slow.settimeout(WAIT_S)
            assert slow.recv(65536).startswith(b"HTTP/1.1 200 ")

        def trickle() -> None:  # a byte every 0.1 s: each one is on time, the head is not
            try:
                slow.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                while not stop.wait(0.1):
                    slow.sendall(b"X")
            except OSError:
                pass  # closed by the server: what this test waits for

        sender = threading.Thread(target=trickle, name="trickle")
        sender.start()
        try:
            answer = reply_or_close(slow)  # returns when the server closes (bound: WAIT_S)
        finally:
            stop.set()
            sender.join(WAIT_S)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


@pytest.mark.parametrize("store_kind", ["memory"])
@pytest.mark.parametrize("parser", PARSERS)
def test_blank_lines_do_not_hold_a_connection_past_the_head_timeout(make_service, store_kind,
                                                                    parser) -> None:
    service = make_service(store_kind, head_timeout_s=0.5, http=parser)
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", service.port), WAIT_S) as idle:

        def blank_lines() -> None:  # each a whole "head" in one read, none a request
            try:
                while not stop.wait(0.1):
                    idle.sendall(b"\r\n\r\n")
            except OSError:
                pass  # closed by the server: what this test waits for

        sender = threading.Thread(target=blank_lines, name="blank-lines")
        sender.start()
        try:
            answer = reply_or_close(idle)
        finally:
            stop.set()
            sender.join(WAIT_S)
    # h11 takes a blank line for a malformed request line; httptools skips them
    assert answer.startswith(b"HTTP/1.1 400 " if parser == "h11" else b"HTTP/1.1 408 "), answer


@pytest.mark.parametrize("store_kind", ["memory"])
@pytest.mark.parametrize("parser", PARSERS)
def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout(
        make_service, store_kind, parser) -> None:
    service = make_service(store_kind, head_timeout_s=0.5, http=parser)
    with socket.create_connection(("127.0.0.1", service.port), WAIT_S) as idle:
        assert reply_or_close(idle).startswith(b"HTTP/1.1 408 ")


# Read boundaries are the network's to choose, so these drive a bounded protocol directly
# through an in-memory transport: each bytes object below is one read.

async def _echo(scope, receive, send) -> None:
    """An ASGI app answering ``METHOD /path <body length>``."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    reply = f"{scope['method']} {scope['path']} {size}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(reply)).encode())]})
    await send({"type": "http.response.body", "body": reply})


def converse(parser: str, reads: list[bytes], replies: int, max_head_bytes: int = 4096
             ) -> list[bytes]:
    """Feed ``reads`` to a bounded ``parser`` connection; return its replies' first line and
    body once it wrote ``replies`` of them or closed."""
    import asyncio

    import uvicorn
    from uvicorn.server import ServerState

    from stagewidget.service.protocol import bounded_protocol

    async def talk() -> bytes:
        loop = asyncio.get_running_loop()
        config = uvicorn.Config(_echo, lifespan="off", log_level="warning", ws="none",
                                h11_max_incomplete_event_size=max_head_bytes)
        protocol = bounded_protocol(parser, max_head_bytes=max_head_bytes,
                                    head_timeout_s=WAIT_S)(
            config=config, server_state=ServerState(), app_state={}, _loop=loop)
        done = asyncio.Event()

        class Transport(asyncio.Transport):
            out, closing = bytearray(), False

            def write(self, data) -> None:
                self.out += data
                if self.out.count(b"HTTP/1.1 ") >= replies:
                    done.set()

            def close(self) -> None:
                if not self.closing:
                    self.closing = True
                    done.set()
                    loop.call_soon(protocol.connection_lost, None)

            def is_closing(self) -> bool:
                return self.closing

            def pause_reading(self) -> None:
                pass

            def resume_reading(self) -> None:
                pass

            def get_extra_info(self, name, default=None):
                return {"peername": ("127.0.0.1", 40000),
                        "sockname": ("127.0.0.1", 8750)}.get(name, default)

        transport = Transport()
        protocol.connection_made(transport)
        for data in reads:
            if not transport.closing:
                protocol.data_received(data)
        await asyncio.wait_for(done.wait(), WAIT_S)
        await asyncio.sleep(0)  # let a reply written in the same turn (431 after 200) land
        transport.close()
        return bytes(transport.out)

    out = asyncio.run(talk())
    return [part.split(b"\r\n", 1)[0] + b" | " + part.rpartition(b"\r\n\r\n")[2]
            for part in out.split(b"HTTP/1.1 ")[1:]]


def request(path: str, head_bytes: int = 0, body: bytes = b"", chunked: bool = False) -> bytes:
    """A request for ``path``, padded with an X-Pad header to ``head_bytes`` when given."""
    method = "POST" if body or chunked else "GET"
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
        body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body, b"\r\n\r\n")
                        ) + b"0\r\n\r\n"
    elif body:
        head += f"Content-Length: {len(body)}\r\n"
    if head_bytes:
        head += "X-Pad: " + "a" * (head_bytes - len(head) - len("X-Pad: \r\n\r\n")) + "\r\n"
    encoded = (head + "\r\n").encode()
    assert not head_bytes or len(encoded) == head_bytes
    return encoded + body


OK_431 = b"431 Request Header Fields Too Large | the request head may be at most 4096 bytes"


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("reads", ["whole", "bytewise", "after a request"])
def test_a_head_of_exactly_the_limit_is_served_and_one_byte_more_is_refused(parser, reads
                                                                            ) -> None:
    def split(data: bytes) -> list[bytes]:
        if reads == "bytewise":
            return [data[i:i + 1] for i in range(len(data))]
        return [request("/first") + data] if reads == "after a request" else [data]

    first = [b"200 OK | GET /first 0"] if reads == "after a request" else []
    assert converse(parser, split(request("/limit", 4096)), 1 + len(first)) == [
        *first, b"200 OK | GET /limit 0"]
    assert converse(parser, split(request("/over", 4097)), 1 + len(first)) == [*first, OK_431]


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("cut", [1, 2, 3])
def test_a_blank_line_split_between_reads_ends_the_head_there(parser, cut) -> None:
    # 3,000 + 3,500 bytes is over the 4,096-byte limit only if the heads were counted as one
    first, second = request("/first", 3000), request("/second", 3500)
    reads = [first[:-cut], first[-cut:] + second]
    assert converse(parser, reads, 2) == [b"200 OK | GET /first 0", b"200 OK | GET /second 0"]


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("last_head", [4096, 4097])
def test_heads_pipelined_after_bodies_in_one_read_are_each_bounded(parser, last_head) -> None:
    # Bodies of any size may come between heads; only the heads count, each on its own.
    reads = [request("/a", 4000, body=b"x" * 10_000) + request("/b", 4000)
             + request("/c", 4000, body=b"y\r\n\r\n" * 1000, chunked=True)
             + request("/d", last_head)]
    last = b"200 OK | GET /d 0" if last_head == 4096 else OK_431
    assert converse(parser, reads, 4) == [b"200 OK | POST /a 10000", b"200 OK | GET /b 0",
                                          b"200 OK | POST /c 5004", last]


@pytest.mark.parametrize("store_kind", ["memory"])
def test_a_service_serves_with_httptools_when_installed_unless_told_h11(make_service,
                                                                        store_kind) -> None:
    fastest = "httptools" if importlib.util.find_spec("httptools") else "h11"
    auto, h11 = make_service(store_kind), make_service(store_kind, http="h11")
    assert auto.http == fastest and f"{fastest} parser" in repr(auto)
    assert h11.http == "h11" and "h11 parser" in repr(h11)
    with pytest.raises(sw.ConfigError, match="http must be one of auto, httptools, h11"):
        make_service(store_kind, http="uvloop")


def test_serve_says_which_parser_serves(serve_cli) -> None:
    served = serve_cli("--http", "h11")
    line = served.read_until(lambda line: line.startswith("serving "))
    assert line.rstrip().endswith("(memory store, h11 parser)"), line
    served.stop()


# -- item 16: the token before routing, the API document included -------------------------

@pytest.mark.parametrize("store_kind", ["memory"])
def test_with_a_token_only_health_answers_without_it(service) -> None:
    with httpx.Client(base_url=service.url, timeout=WAIT_S) as anonymous:
        for method, path in [("GET", "/openapi.json"), ("GET", "/api/openapi.json"),
                             ("GET", "/api/pipelines"), ("GET", "/api/runs"),
                             ("GET", "/nowhere"), ("PUT", "/api/runs"),
                             ("POST", "/api/pipelines/square/runs"),
                             ("GET", f"/api/runs/{uuid.uuid4()}/events")]:
            reply = anonymous.request(method, path)
            assert reply.status_code == 401, (method, path, reply.status_code)
            assert reply.headers["content-type"] == PROBLEM
            assert reply.json()["type"].endswith(":unauthorized") and "paths" not in reply.text
        assert anonymous.get("/api/health").status_code == 200
        signed = {"headers": auth(service)}
        assert anonymous.get("/openapi.json", **signed).status_code == 200
        assert anonymous.get("/nowhere", **signed).status_code == 404
        assert anonymous.put("/api/runs", **signed).status_code == 405


@pytest.mark.parametrize("store_kind", ["memory"])
def test_cors_preflight_needs_no_token_and_a_401_carries_cors_headers(make_service,
                                                                       store_kind) -> None:
    origin = "http://dashboard.example"
    service = make_service(store_kind, cors_origins=(origin,))
    with httpx.Client(base_url=service.url, timeout=WAIT_S) as anonymous:
        preflight = anonymous.options("/api/runs", headers={
            "Origin": origin, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 200
        denied = anonymous.get("/api/runs", headers={"Origin": origin})
        assert denied.status_code == 401
        assert denied.headers["access-control-allow-origin"] == origin


# -- item 17: tracebacks stay on the server unless the operator opts in --------------------

def test_failed_runs_show_clients_no_traceback_on_any_route(client) -> None:
    posted = client.post("/api/pipelines/fails/runs", json={"row": 4},
                         headers={"Prefer": "wait=20"})
    run_id = posted.json()["run_id"]
    bodies = [posted.text, client.get(f"/api/runs/{run_id}").text,
              client.get("/api/runs").text]
    with client.stream("GET", f"/api/runs/{run_id}/events") as stream:
        bodies.append(stream.read().decode())
    error = posted.json()["error"]
    assert error == {"type": "ValueError", "message": "row 4 is malformed", "traceback": "",
                     "stage": "load"}
    for body in bodies:
        assert "row 4 is malformed" in body
        assert "Traceback" not in body and "svc_pipelines.py" not in body, body[:500]


@pytest.mark.parametrize("store_kind", ["memory"])
def test_expose_tracebacks_shows_them_to_clients(make_service, store_kind) -> None:
    service = make_service(store_kind, expose_tracebacks=True)
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        body = client.post("/api/pipelines/fails/runs", json={"row": 4},
                           headers={"Prefer": "wait=20"}).json()
        assert "raise ValueError" in body["error"]["traceback"]
        assert "raise ValueError" in client.get("/api/runs").json()["runs"][0]["error"][
            "traceback"]


def test_the_cli_exposes_tracebacks_only_when_asked(service_process) -> None:
    for flags, shown in [((), False), (("--expose-tracebacks",), True)]:
        process = service_process(*flags)
        body = process.http.post("/api/pipelines/fails/runs", json={"row": 4},
                                 headers={"Prefer": "wait=20"}).json()
        assert body["error"]["message"] == "row 4 is malformed"
        assert ("raise ValueError" in body["error"]["traceback"]) is shown
        process.stop()



# -- issue 12 item 2: run logs (what stages printed) stay on the server unless exposed -----

def test_run_logs_are_hidden_from_clients_on_every_route(client) -> None:
    posted = client.post("/api/pipelines/fails/runs", json={"row": 4},
                         headers={"Prefer": "wait=20"})
    run_id = posted.json()["run_id"]
    bodies = [posted.text, client.get(f"/api/runs/{run_id}").text]
    with client.stream("GET", f"/api/runs/{run_id}/events") as stream:
        bodies.append(stream.read().decode())
    assert posted.json()["logs"] == [] and client.get(f"/api/runs/{run_id}").json()["logs"] == []
    for body in bodies:
        assert "/srv/secret" not in body, body[:500]


@pytest.mark.parametrize("store_kind", ["memory"])
def test_expose_logs_shows_a_runs_printed_lines_to_clients(make_service, store_kind) -> None:
    service = make_service(store_kind, expose_logs=True)
    with httpx.Client(base_url=service.url, timeout=WAIT_S, headers=auth(service)) as client:
        body = client.post("/api/pipelines/fails/runs", json={"row": 4},
                           headers={"Prefer": "wait=20"}).json()
        assert body["logs"] == ["loading row 4 from /srv/secret/rows.csv"]
        assert body["error"]["traceback"] == ""  # a switch of its own


def test_the_cli_exposes_logs_only_when_asked(service_process) -> None:
    for flags, shown in [((), []), (("--expose-logs",),
                                    ["loading row 4 from /srv/secret/rows.csv"])]:
        process = service_process(*flags)
        body = process.http.post("/api/pipelines/fails/runs", json={"row": 4},
                                 headers={"Prefer": "wait=20"}).json()
        assert body["error"]["message"] == "row 4 is malformed"
        assert body["logs"] == shown
        process.stop()


# -- item 18: a token by default ----------------------------------------------------------

@pytest.mark.parametrize("store_kind", ["memory"])
def test_a_service_given_no_token_generates_one_and_requires_it(make_service, store_kind
                                                                ) -> None:
    first, second = make_service(store_kind), make_service(store_kind)
    assert len(first.token) >= 32 and first.token != second.token
    assert f"token: {first.token}" in repr(first)
    with httpx.Client(base_url=first.url, timeout=WAIT_S) as anonymous:
        assert anonymous.get("/api/runs").status_code == 401
        assert anonymous.get("/api/runs", headers=auth(second)).status_code == 401
        assert anonymous.get("/api/runs", headers=auth(first)).status_code == 200


@pytest.mark.parametrize("store_kind", ["memory"])
def test_an_empty_token_turns_the_check_off(make_service, store_kind) -> None:
    service = make_service(store_kind, token="")
    with httpx.Client(base_url=service.url, timeout=WAIT_S) as anonymous:
        assert anonymous.get("/api/runs").status_code == 200
        assert "security" not in anonymous.get("/openapi.json").json()


def test_sw_serve_requires_its_generated_token() -> None:
    service = sw.serve(port=0)
    try:
        assert service.token and f"token: {service.token}" in repr(service)
        with httpx.Client(base_url=service.url, timeout=WAIT_S) as anonymous:
            assert anonymous.get("/api/runs").status_code == 401
            assert anonymous.get("/api/runs", headers=auth(service)).status_code == 200
    finally:
        service.stop()
    assert service.token not in repr(service)  # of no use once stopped


class Serve:
    """``python -m stagewidget serve`` on the memory store, its stderr read line by line."""

    def __init__(self, *flags: str, env_token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "STAGEWIDGET_TOKEN"}
        env["PYTHONPATH"] = str(HERE)
        if env_token is not None:
            env["STAGEWIDGET_TOKEN"] = env_token
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stagewidget", "serve", "svc_pipelines:PIPELINES",
             "--port", str(self.port), *flags], cwd=HERE, env=env, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines: list[str] = []

    def read_until(self, predicate) -> str:
        """Read stderr lines until one satisfies ``predicate``; return it."""
        assert self.proc.stderr is not None
        while True:
            line = self.proc.stderr.readline()
            assert line, "the server ended:\n" + "".join(self.lines)
            self.lines.append(line)
            if predicate(line):
                return line

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            try:
                return httpx.get(f"{self.url}/api/health", timeout=WAIT_S).status_code == 200
            except httpx.TransportError:
                assert self.proc.poll() is None, "the server ended"
                return False
        wait_until(healthy, what="the served process to answer")

    def stop(self) -> str:
        """Stop it; return everything it wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
        _, rest = self.proc.communicate(timeout=WAIT_S)
        return "".join(self.lines) + rest


@pytest.fixture
def serve_cli():
    started: list[Serve] = []

    def make(*flags: str, env_token: str | None = None) -> Serve:
        started.append(Serve(*flags, env_token=env_token))
        return started[-1]

    yield make
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(WAIT_S)


def test_serve_prints_a_generated_token_on_its_own_line_and_requires_it(serve_cli) -> None:
    served = serve_cli()
    served.read_until(lambda line: "Authorization: Bearer <token>" in line)
    token = served.read_until(lambda line: True).strip()
    assert len(token) >= 32 and " " not in token and "/" not in token
    served.wait_healthy()
    with httpx.Client(base_url=served.url, timeout=WAIT_S) as anonymous:
        assert anonymous.get("/api/runs").status_code == 401
        ok = anonymous.get("/api/runs", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
    served.stop()


def test_serve_takes_the_token_from_the_environment_and_does_not_print_it(serve_cli) -> None:
    token = f"env-{uuid.uuid4().hex}"
    served = serve_cli(env_token=token)
    served.wait_healthy()
    with httpx.Client(base_url=served.url, timeout=WAIT_S) as anonymous:
        assert anonymous.get("/api/runs").status_code == 401
        signed = anonymous.get("/api/runs", headers={"Authorization": f"Bearer {token}"})
        assert signed.status_code == 200
    output = served.stop()
    assert "the token you gave" in output and token not in output


def test_serve_with_no_token_answers_anyone_and_says_so(serve_cli) -> None:
    served = serve_cli("--no-token")
    served.read_until(lambda line: "no token (--no-token)" in line)
    served.wait_healthy()
    assert httpx.get(f"{served.url}/api/runs", timeout=WAIT_S).status_code == 200
    served.stop()


def test_serve_refuses_other_host_names_but_those_allowed_and_caps_streams(serve_cli
                                                                          ) -> None:
    served = serve_cli("--no-token", "--allowed-host", "dash.example.org", "--max-streams",
                       "1")
    served.wait_healthy()
    with httpx.Client(base_url=served.url, timeout=WAIT_S) as client:
        assert client.get("/api/runs", headers={"Host": "evil.example"}).status_code == 400
        assert client.get("/api/runs", headers={"Host": "dash.example.org"}
                          ).status_code == 200
        with client.stream("GET", "/api/events") as held:
            assert held.status_code == 200
            assert client.get("/api/events").status_code == 429
    served.stop()


# -- item 19: the access log --------------------------------------------------------------

def test_serve_logs_a_line_per_request_without_the_token(serve_cli) -> None:
    token = f"env-{uuid.uuid4().hex}"
    served = serve_cli(env_token=token)
    served.wait_healthy()
    with httpx.Client(base_url=served.url, timeout=WAIT_S) as anonymous:
        anonymous.get("/api/runs?limit=7", headers={"Authorization": f"Bearer {token}"})
        anonymous.get("/api/runs")
    line = served.read_until(lambda line: '"GET /api/runs?limit=7 HTTP/1.1" 200' in line)
    assert "stagewidget.service.access 127.0.0.1:" in line and line.rstrip().endswith(" ms")
    served.read_until(lambda line: '"GET /api/runs HTTP/1.1" 401' in line)
    assert token not in served.stop()


def test_serve_no_access_log_turns_it_off(serve_cli) -> None:
    served = serve_cli("--no-access-log")
    served.wait_healthy()
    httpx.get(f"{served.url}/api/health", timeout=WAIT_S)
    assert "GET /api/health" not in served.stop()


@pytest.mark.parametrize("store_kind", ["memory"])
def test_a_service_logs_no_requests_unless_asked(make_service, store_kind, caplog) -> None:
    caplog.set_level(logging.INFO, logger="stagewidget.service.access")
    quiet, loud = make_service(store_kind), make_service(store_kind, access_log=True)
    httpx.get(f"{quiet.url}/api/health", timeout=WAIT_S)
    httpx.get(f"{loud.url}/api/runs", headers=auth(loud), timeout=WAIT_S)

    def logged() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "stagewidget.service.access"]
    lines = wait_until(logged, what="the access log line")
    assert len(lines) == 1 and '"GET /api/runs HTTP/1.1" 200' in lines[0], lines
    assert f":{loud.port}" not in lines[0]  # the client's address, not the server's



# -- siblings -----------------------------------------------------------------------------

@pytest.mark.parametrize("store_kind", ["memory"])
def test_an_idempotency_key_outside_printable_ascii_is_a_400(client) -> None:
    reply = client.post("/api/pipelines/square/runs", json={"n": 1},
                        headers={"Idempotency-Key": b"caf\xe9"})  # latin-1, as on the wire
    assert reply.status_code == 400 and "Idempotency-Key" in reply.json()["detail"]
    assert client.get("/api/runs").json()["total"] == 0


def test_the_reply_encoder_escapes_surrogates_and_nulls_non_finite_numbers() -> None:
    from stagewidget.service.wire import encode_json

    assert encode_json({"name": "\udcff", "loss": float("nan"), "rate": [float("inf"), 1.5]}
                       ) == b'{"name":"\\udcff","loss":null,"rate":[null,1.5]}'


@pytest.mark.parametrize("store_kind", ["memory"])
@pytest.mark.parametrize("parser", PARSERS)
def test_a_websocket_upgrade_is_not_served(make_service, store_kind, parser) -> None:
    service = make_service(store_kind, http=parser)
    with socket.create_connection(("127.0.0.1", service.port), WAIT_S) as sock:
        sock.sendall(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        sock.settimeout(WAIT_S)
        answer = sock.recv(65536)
    assert not answer.startswith(b"HTTP/1.1 101"), answer[:200]
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
