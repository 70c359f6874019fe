"""The dashboard's page routes: ``/``, ``/runs/{id}`` and ``/static/...``, open to anyone.

They serve files shipped in ``service/static/`` and hold no run data (the page reads it
from the API once logged in), so ``TokenGuard`` lets them through without the token.
Every reply forbids framing (a framed Cancel button could be clicked by another page)
and loading anything from outside the service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["OPEN_PAGE_PATHS", "OPEN_PAGE_PREFIXES", "STATIC_DIR", "page_routes"]

STATIC_DIR = Path(__file__).parent / "static"
OPEN_PAGE_PATHS = frozenset({"/"})
OPEN_PAGE_PREFIXES = ("/runs/", "/static/")

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


async def _index(request: Any) -> Any:
    from starlette.responses import FileResponse

    return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
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
            Mount("/static", app=_StaticFiles(), name="static")]
