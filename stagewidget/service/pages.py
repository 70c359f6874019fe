"""The dashboard's page routes: ``/``, ``/runs/{id}`` and ``/static/...``, open to anyone.

They serve files shipped in ``service/static/`` and hold no run data (the page reads it
from the API once logged in), so ``TokenGuard`` lets them through without the token.
Every reply forbids framing (a framed Cancel button could be clicked by another page)
and loading anything from outside the service.

``index.html`` is a template: each ``__BASE__`` in it becomes the path the page is served
under (``/`` here; the Jupyter Server extension serves it under its own base URL), so
the page's script and its requests find their way under any prefix. ``render_index``
and ``PAGE_HEADERS`` are shared with that extension.
"""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["OPEN_PAGE_PATHS", "OPEN_PAGE_PREFIXES", "PAGE_HEADERS", "STATIC_DIR",
           "page_routes", "render_index"]

STATIC_DIR = Path(__file__).parent / "static"
OPEN_PAGE_PATHS = frozenset({"/"})
OPEN_PAGE_PREFIXES = ("/runs/", "/static/")
BASE_MARK = "__BASE__"

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it browsers send "Origin: null" on the page's own POSTs,
    # which the Origin check refuses.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


@lru_cache(maxsize=16)
def render_index(base: str) -> bytes:
    """The dashboard page (``index.html``) for serving under the path ``base``.

    Every ``__BASE__`` of the template becomes ``base``, HTML-escaped (quotes included,
    as it lands in attributes). The result is cached per base: the template ships with
    the package and does not change while it runs.

    Args:
        base: the absolute path the page's routes live under, ending in ``/``
            (``"/"``, ``"/user/alice/stagewidget/"``).

    Raises:
        ValueError: ``base`` does not start and end with ``/``, or holds a control
            character.
    """
    if not isinstance(base, str) or not base.startswith("/") or not base.endswith("/"):
        raise ValueError(f"the page's base path must start and end with '/' (got {base!r})")
    if base.startswith("//"):
        raise ValueError(f"the page's base path must not start with '//', which browsers "
                         f"read as another host (got {base!r})")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in base):
        raise ValueError(f"the page's base path must hold no control character "
                         f"(got {base!r})")
    template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return template.replace(BASE_MARK, html.escape(base, quote=True)).encode("utf-8")


async def _index(request: Any) -> Any:
    from starlette.responses import Response

    return Response(render_index("/"), media_type="text/html; charset=utf-8",
                    headers=PAGE_HEADERS)


class _StaticFiles:
    """Starlette's ``StaticFiles`` for ``STATIC_DIR``, its replies with ``PAGE_HEADERS``."""

    def __init__(self) -> None:
        from starlette.staticfiles import StaticFiles

        self.files = StaticFiles(directory=STATIC_DIR)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [
                    *message.get("headers", []),
                    *((k.lower().encode(), v.encode()) for k, v in PAGE_HEADERS.items())]}
            await send(message)

        await self.files(scope, receive, with_headers)


def page_routes() -> list[Any]:
    """The page's routes, for the app's route list."""
    from starlette.routing import Mount, Route

    return [Route("/", _index, methods=["GET"]),
            Route("/runs/{run_id}", _index, methods=["GET"]),
            # the template itself: rendered, never with its placeholders
            Route("/static/index.html", _index, methods=["GET"]),
            Mount("/static", app=_StaticFiles(), name="static")]
