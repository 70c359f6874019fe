"""The HTTP/1.1 connection: uvicorn's protocols with a bounded, timed request head.

A request head (request line and headers) arrives before anything can check the token, so
its size and the time it may take are bounded here, with either HTTP parser: httptools
(faster, picked when installed) or h11. Left alone, httptools accepts any head size and
h11 lets a head arriving whole in one read past its own limit. A head over
``max_head_bytes`` (the blank line included) is answered ``431`` and the connection closed;
a connection that has not sent a complete head ``head_timeout_s`` after it opened (or
after the first byte of a later request on a kept-alive connection) is answered ``408`` and
closed. Idle kept-alive connections are closed by uvicorn's ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
from typing import Any

import h11

from ..errors import ConfigError

__all__ = ["PARSERS", "bounded_protocol", "pick_parser"]

PARSERS = ("httptools", "h11")
"""The HTTP parsers a service can use, fastest first."""

# Where a head can end: a blank line, CRLF CRLF or with bare LFs, which h11 (and httptools
# before llhttp) take as line ends too.
_HEAD_END = re.compile(rb"\n\r?\n")


def pick_parser(http: str = "auto") -> str:
    """The parser to use for ``http``: ``"auto"`` is httptools when importable, else h11."""
    if http not in ("auto", *PARSERS):
        raise ConfigError(f"http must be one of auto, {', '.join(PARSERS)} (got {http!r})")
    if http == "h11":
        return "h11"
    if importlib.util.find_spec("httptools") is None:
        if http == "httptools":
            raise ConfigError("http='httptools' needs the httptools package: "
                              "pip install httptools (or use http='h11')")
        return "h11"
    return "httptools"


def bounded_protocol(parser: str, *, max_head_bytes: int, head_timeout_s: float
                     ) -> type[asyncio.Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``: ``parser`` with bounded heads.

    For h11, pass ``h11_max_incomplete_event_size=max_head_bytes`` to the config too.
    """
    bases: tuple[type, ...]
    if parser == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        bases = (_HttpToolsHead, HttpToolsProtocol)
    elif parser == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol

        bases = (_H11Head, H11Protocol)
    else:
        raise ValueError(f"unknown parser {parser!r}")
    return type(f"Bounded{bases[1].__name__}", bases,
                {"max_head_bytes": int(max_head_bytes), "head_timeout_s": float(head_timeout_s)})


class _HeadBounds:
    """What both bounded protocols share: the head timer and the reply that refuses a head.

    Mixed in before uvicorn's protocol class, whose ``loop``, ``transport``, ``client``,
    ``logger`` and ``timeout_keep_alive_task`` it uses. A subclass says when a head is
    awaited and begun. Everything runs on the server's event loop.
    """

    # Slots, not instance attributes: uvicorn's protocols have 25-28 of those already, and
    # past 30 an instance dict stops sharing its keys, which slows every attribute access.
    __slots__ = ("_head_timer",)

    max_head_bytes: int = 64 * 1024
    head_timeout_s: float = 10.0

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: tuple[str, int] | None
    logger: Any
    timeout_keep_alive_task: asyncio.TimerHandle | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._head_timer: asyncio.TimerHandle | None = None
        super().__init__(*args, **kwargs)

    def _head_awaited(self) -> bool:
        """Whether the client is to send a request head (no response is being written)."""
        raise NotImplementedError

    def _head_begun(self) -> bool:
        """Whether some of that head has arrived."""
        raise NotImplementedError

    def _responding(self) -> bool:
        """Whether a response is being written (a reply now would garble it)."""
        return False

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if self._head_begun():  # part of the next head came during the response
            self._watch_head()

    def _watch_head(self) -> None:
        """Time the head while one is awaited; stop timing once it is in."""
        if not self._head_awaited() or self.transport.is_closing():
            self._stop_head_timer()
        elif self._head_timer is None and (self.timeout_keep_alive_task is None
                                           or self._head_begun()):
            # A kept-alive connection with nothing sent is uvicorn's keep-alive timer's.
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_awaited() and not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
            self.logger.info("closing a connection from %s: no complete request head "
                             "within %g s", client, self.head_timeout_s)
            self._refuse(408, "Request Timeout",
                         f"the request head took over {self.head_timeout_s:g} s")

    def _refuse_head_size(self) -> None:
        self._refuse(431, "Request Header Fields Too Large",
                     f"the request head may be at most {self.max_head_bytes} bytes")

    def _refuse(self, status: int, reason: str, text: str) -> None:
        """Write a small plain-text reply (outside the parser: no request was parsed), close."""
        self._stop_head_timer()
        if not self._responding():
            body = text.encode("ascii")
            self.transport.write(
                f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode("ascii")
                + body)
        self.transport.close()


class _H11Head(_HeadBounds):
    """``H11Protocol`` with the head bounds.

    h11's own limit (``max_incomplete_event_size``) holds only while a head is incomplete:
    a longer head arriving whole in one read would pass. So what is buffered is looked at
    whenever a head is awaited: the end of the head must come within the limit.
    """

    __slots__ = ()

    conn: Any

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        self._watch_head()

    def handle_events(self) -> None:
        if self.conn.their_state is h11.IDLE:
            buffered = self.conn.trailing_data[0]
            limit = self.max_head_bytes
            if len(buffered) > limit and _HEAD_END.search(buffered, 0, limit) is None:
                self._refuse_head_size()
                return
        super().handle_events()  # type: ignore[misc]

    def _head_awaited(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def _head_begun(self) -> bool:
        return bool(self.conn.trailing_data[0])


class _HttpToolsHead(_HeadBounds):
    """``HttpToolsProtocol`` with the head bounds.

    httptools parses what it is fed at once and buffers a head of any size, so the bytes
    are fed in pieces that each end where a head or a body can end: a head piece ends at
    the first blank line (CRLF CRLF, or a bare-LF form), and no piece goes past
    ``max_head_bytes`` of the head it belongs to (else 431, before the parser sees it); a
    body piece ends where the ``Content-Length`` body does, or for a chunked body at the
    next blank line (its last chunk ends in one). So every head starts at the start of a
    piece and is counted whole, whether it came in one read with others (pipelined) or
    over many. A complete head in one read, the usual case, is fed as it came.
    """

    __slots__ = ("_body_left", "_head_bytes", "_in_head", "_refusing", "_tail")

    cycle: Any
    headers: list[tuple[bytes, bytes]]
    flow: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._in_head = True  # from a message's end (or the connection's start) to its head's
        self._head_bytes = 0  # end; the bytes of the head in progress
        self._body_left: int | None = None  # of a Content-Length body; -1 for chunked
        self._tail = b""  # the last bytes of an unfinished head or chunked body: a blank
        # line may be split between reads
        self._refusing = False  # a head over the limit waits for the responses before it
        super().__init__(*args, **kwargs)

    def data_received(self, data: bytes) -> None:
        if self._in_head and not self._head_bytes and len(data) <= self.max_head_bytes:
            end = _HEAD_END.search(data)
            if end is not None and end.end() == len(data) and not self._refusing:
                # One whole head, as a read usually brings it: fed as it came.
                super().data_received(data)  # type: ignore[misc]
                self._tail = b""
                if self._in_head and not self._responding():  # only blank lines came
                    self._watch_head()
                elif self._head_timer is not None:
                    self._stop_head_timer()
                return
        self._feed_in_pieces(data)

    def _feed_in_pieces(self, data: bytes) -> None:
        if self._refusing:
            return
        start, size = 0, len(data)
        while start < size:
            end = self._head_piece(data, start) if self._in_head else self._body_piece(data,
                                                                                     start)
            if end < 0:
                self._refuse_head_size_in_turn()
                return
            piece = data if start == 0 and end == size else memoryview(data)[start:end]
            super().data_received(piece)  # type: ignore[misc]
            if self.transport.is_closing():  # a parse error was answered 400
                return
            unfinished = self._head_bytes if self._in_head else self._body_left == -1
            self._tail = (self._tail + data[max(start, end - 2):end])[-2:] if unfinished else b""
            start = end
        self._watch_head()

    def _refuse_head_size_in_turn(self) -> None:
        """Refuse a head over the limit, after the requests pipelined before it are answered
        (as h11, which parses no further until then, does)."""
        if self._responding():
            self._refusing = True
            self.flow.pause_reading()
        else:
            self._refuse_head_size()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refusing and not self._responding():
            self._refuse_head_size()

    def _head_piece(self, data: bytes, start: int) -> int:
        """Where the head piece from ``start`` ends; -1 if the head is over the limit."""
        room = self.max_head_bytes - self._head_bytes
        end = self._blank_line_end(data, start, start + room)
        if end < 0:
            if len(data) - start > room:
                return -1
            end = len(data)
        self._head_bytes += end - start
        return end

    def _body_piece(self, data: bytes, start: int) -> int:
        """Where the body piece from ``start`` ends."""
        if self._body_left is None:
            self._body_left = self._content_length()
        if self._body_left < 0:
            end = self._blank_line_end(data, start, len(data))
            return len(data) if end < 0 else end
        end = min(len(data), start + self._body_left)
        self._body_left -= end - start
        return end

    def _blank_line_end(self, data: bytes, start: int, stop: int) -> int:
        """The offset just past the first blank line that ends in ``data[start:stop]`` (one
        begun in the previous piece included), or -1."""
        tail = self._tail
        if tail:
            for match in _HEAD_END.finditer(tail + data[start:start + 2]):
                if match.end() > len(tail):
                    end = start + match.end() - len(tail)
                    return end if end <= stop else -1
        found = _HEAD_END.search(data, start, stop)
        return found.end() if found else -1

    def _content_length(self) -> int:
        """The body's length from the head (-1 when chunked; llhttp checked the values)."""
        length = -1
        for name, value in self.headers:
            if name == b"transfer-encoding":
                return -1
            if name == b"content-length" and value.isdigit():
                length = int(value)
        return length

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes, self._body_left = False, 0, None
        super().on_headers_complete()  # type: ignore[misc]

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()  # type: ignore[misc]

    def _responding(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _head_awaited(self) -> bool:
        return self._in_head and not self._responding()

    def _head_begun(self) -> bool:
        return self._head_bytes > 0
