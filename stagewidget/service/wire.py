"""JSON replies and numbers as they cross the wire: encoded and parsed so neither can fail.

``str.isdigit()`` takes '²' (which ``int()`` refuses) and Arabic-Indic digits (which it
reads), and ``int()`` of 5,000 digits hits Python's limit; Starlette's ``JSONResponse``
encodes UTF-8 after ``ensure_ascii=False``, which a lone surrogate (``os.fsdecode``, a
``"\\udcff"`` input) fails.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["ascii_int", "encode_json", "is_ascii_digits", "json_response"]

_ASCII_DIGITS = re.compile(r"[0-9]+")


def encode_json(value: Any) -> bytes:
    """``value`` as JSON bytes, for every reply (routes, problems, event streams).

    Never fails on data the store gave back: non-ASCII is escaped (``\\udcff`` too, where a
    lone surrogate from ``os.fsdecode`` or a JSON input cannot be encoded as UTF-8), and
    NaN or infinity, which JSON lacks, become null.
    """
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(_finite(value), allow_nan=False, separators=(",", ":"))
    return text.encode("ascii")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None,
                  media_type: str = "application/json") -> Any:
    """The one JSON response class of the API, rendered by ``encode_json``; never sniffed
    as anything but JSON (``nosniff``)."""
    from starlette.responses import Response

    return Response(encode_json(content), status_code=status_code,
                    headers={"X-Content-Type-Options": "nosniff", **(headers or {})},
                    media_type=media_type)


def ascii_int(text: str, max_digits: int) -> int | None:
    """``text`` as a non-negative int if it is ASCII digits with at most ``max_digits``
    after leading zeros, else None (``int()`` would take '²' or choke on 5,000 digits)."""
    if not is_ascii_digits(text):
        return None
    significant = text.lstrip("0")
    return int(significant or "0") if len(significant) <= max_digits else None


def is_ascii_digits(text: str) -> bool:
    """Whether ``text`` is one or more of the ASCII digits 0-9 (nothing else)."""
    return _ASCII_DIGITS.fullmatch(text) is not None
