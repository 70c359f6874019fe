"""A stage function's code fingerprint: changes when its code does, not when it moves.

A minimal version: the function's bytecode, constants (nested functions' code
included), the names it uses, its defaults and its closure values. File names and line
numbers are left out, so the same code in a re-run notebook cell, or moved down a file,
keeps its fingerprint. The helpers a stage calls are not covered, and values (constants,
defaults, closure values) count by their bounded ``repr`` (``status.safe_repr``).
"""

from __future__ import annotations

import functools
import hashlib
import re
from types import CodeType
from typing import Any

from ..status import safe_repr

__all__ = ["stage_fingerprint"]

_REPR_CHARS = 2_000
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # default reprs differ from process to process


def stage_fingerprint(fn: Any) -> str:
    """Return a hex digest of ``fn``'s code, constants, names, defaults and closure values.

    Works for plain and ``async`` functions, ``functools.partial`` and callable objects;
    anything without Python code is fingerprinted by its qualified name. Never raises.
    """
    digest = hashlib.blake2b(digest_size=16)
    try:
        _feed(digest, fn, depth=0)
    except Exception as err:  # a hostile __repr__ or __getattr__: fall back to the name
        digest.update(f"<unhashable: {type(err).__name__}>".encode())
        digest.update(_name(fn).encode())
    return digest.hexdigest()


def _feed(digest: Any, fn: Any, depth: int) -> None:
    if isinstance(fn, functools.partial):
        _feed(digest, fn.func, depth + 1)
        digest.update(_text(fn.args).encode() + _text(fn.keywords).encode())
        return
    fn = getattr(fn, "__func__", fn)  # a bound method: its function
    code = getattr(fn, "__code__", None)
    if not isinstance(code, CodeType):
        call = type(fn).__call__ if callable(fn) else None
        code = getattr(call, "__code__", None)
        if not isinstance(code, CodeType) or depth > 0:
            digest.update(_name(fn).encode())
            return
        _feed(digest, call, depth + 1)
        return
    _feed_code(digest, code)
    digest.update(_text(getattr(fn, "__defaults__", None)).encode())
    digest.update(_text(getattr(fn, "__kwdefaults__", None)).encode())
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell (a name not bound yet)
            value = "<empty>"
        digest.update(_text(value).encode())


def _feed_code(digest: Any, code: CodeType) -> None:
    digest.update(code.co_code)
    digest.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, CodeType):
            _feed_code(digest, const)
        else:
            digest.update(_text(const).encode())


def _text(value: Any) -> str:
    # bounded: a closure holding a list of ten million items must not cost its repr
    return _ADDRESS.sub("", safe_repr(value, _REPR_CHARS))


def _name(fn: Any) -> str:
    kind = fn if isinstance(fn, type) else type(fn)
    return f"{getattr(kind, '__module__', '?')}.{getattr(fn, '__qualname__', kind.__qualname__)}"
