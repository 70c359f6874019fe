"""The HTTP/1.1 connection: uvicorn's h11 protocol with a bounded, timed request head.

A request head (request line and headers) arrives before anything can check the token, so
its size and the time it may take are bounded here, whichever HTTP parser happens to be
installed: the server always uses h11 (uvicorn's default would switch to httptools when the
``bench`` extra pulls it in, and httptools accepts a 32 MB head). A head over
``max_head_bytes`` is answered ``431`` and the connection closed; a connection that has not
sent a complete head ``head_timeout_s`` after it opened (or after the first byte of a later
request on a kept-alive connection) is answered ``408`` and closed. Idle kept-alive
connections are closed by uvicorn's ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["bounded_h11"]

_HEAD_END = re.compile(rb"\n\r?\n")  # h11 takes a bare LF as a line end too


def _reply_and_close(transport: asyncio.Transport, status: int, reason: str, text: str) -> None:
    """Write a small plain-text reply and close (outside h11: no request was parsed)."""
    body = text.encode("ascii")
    transport.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode("ascii")
                    + body)
    transport.close()


class _BoundedH11(H11Protocol):
    """``H11Protocol`` with a head timeout and a head size limit (431).

    The limit is the config's ``h11_max_incomplete_event_size``, which h11 applies too.
    Everything runs on the server's event loop.
    """

    head_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def handle_events(self) -> None:
        # h11's own limit (max_incomplete_event_size) holds only while a head is incomplete:
        # a longer head arriving whole in one read would pass. So look at what is buffered
        # whenever a head is awaited: the end of the head must come within the limit.
        if self.conn.their_state is h11.IDLE:
            limit = self.config.h11_max_incomplete_event_size or 16 * 1024
            buffered = self.conn.trailing_data[0]
            if len(buffered) > limit and _HEAD_END.search(buffered, 0, limit + 3) is None:
                self._stop_head_timer()
                _reply_and_close(self.transport, 431, "Request Header Fields Too Large",
                                 f"the request head may be at most {limit} bytes")
                return
        super().handle_events()

    def _watch_head(self) -> None:
        """Time the head while one is awaited (h11 IDLE); stop timing once it is in."""
        awaiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if not awaiting:
            self._stop_head_timer()
        elif self._head_timer is None and (self.timeout_keep_alive_task is None
                                           or self.conn.trailing_data[0]):
            # A kept-alive connection with nothing sent is uvicorn's keep-alive timer's.
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
            self.logger.info("closing a connection from %s: no complete request head "
                             "within %g s", client, self.head_timeout_s)
            _reply_and_close(self.transport, 408, "Request Timeout",
                             f"the request head took over {self.head_timeout_s:g} s")


def bounded_h11(head_timeout_s: float) -> type[H11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with this head timeout.

    Pair it with ``h11_max_incomplete_event_size=max_head_bytes`` in the same config.
    """
    return type("BoundedH11Protocol", (_BoundedH11,), {"head_timeout_s": float(head_timeout_s)})
