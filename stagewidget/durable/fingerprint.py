"""A stage function's code fingerprint: the same code gives the same digest in any process.

``stage_fingerprint(fn)`` covers the function's own code: its bytecode, constants
(nested functions, lambdas and comprehensions by the same rule, recursively), the names
and local variable names it uses, its defaults and keyword defaults, and the values of
its closure cells. ``async def`` functions and generators are covered the same way.

It leaves out on purpose:

- file names and line numbers (a notebook cell's code lives in a file named after the
  kernel's process, and adding a cell above moves it), and comments (not compiled);
- the helpers it calls and the globals it reads: only their *names* are covered, not
  their code or values. Editing a helper does not change the fingerprint of the stage
  calling it; pass such values as the stage's input, a default or a closure instead.

Values (defaults, closure cells) are hashed by value with ``joblib.hash``; a function
value by its own fingerprint. A value joblib cannot hash (it pickles it) counts by its
type and its attributes (``__dict__``, by the same rule) if it has any, else by its type
only (a lock, an open file, a generator): changing such a value does not change the
fingerprint.

``stage_fingerprint(fn, values=False)`` covers the code alone (values count by their type,
plain constants and functions as above): what the run history matches durations on,
cheap enough for every run's start, whatever a stage's closure holds.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import types
from collections.abc import Callable
from typing import Any

__all__ = ["stage_fingerprint"]

_log = logging.getLogger("stagewidget")

_VERSION = b"stagewidget-fingerprint-1"
# Constants are simple immutable values (the compiler makes nothing else): written as
# type name and repr, which do not depend on the process (frozensets are sorted).
# The flags saying what kind of function it is (generator, coroutine, *args...), not the
# __future__ flags: a notebook's earlier `from __future__ import ...` sets those on every
# later cell's code (where they change the code, the bytecode differs anyway).
_KIND_FLAGS = 0x3FF
_PLAIN = (str, bytes, int, float, complex, bool, type(None), type(Ellipsis))


def stage_fingerprint(fn: Callable[..., Any], *, values: bool = True) -> str:
    """Return a hex digest of ``fn``'s own code and values, stable across processes.

    With ``values=False`` a default or closure value that is not a plain constant or a
    function counts by its type only (nothing is hashed or imported).

    ``fn`` is a plain or ``async def`` function, a ``functools.partial`` of one (its
    arguments count as values), a bound method (its instance counts as a value), a
    callable object (its class's ``__call__`` and the object itself) or a builtin (its
    qualified name). See the module docstring for what is and is not covered.
    """
    digest = hashlib.sha256(_VERSION if values else _VERSION + b"-code")
    _feed_callable(digest, fn, set() if values else _CodeOnly())
    return digest.hexdigest()


def _feed(digest: Any, tag: bytes, data: bytes = b"") -> None:
    # length-prefixed, so no two different sequences of parts give the same bytes
    digest.update(tag + len(data).to_bytes(8, "little") + data)


def _feed_callable(digest: Any, fn: Any, seen: set[int]) -> None:
    if id(fn) in seen:  # a function reaching itself through its closure (recursion)
        _feed(digest, b"again")
        return
    seen.add(id(fn))
    if isinstance(fn, functools.partial):
        _feed(digest, b"partial")
        _feed_callable(digest, fn.func, seen)
        _feed_value(digest, fn.args, seen)
        _feed_value(digest, sorted(fn.keywords.items()), seen)
    elif isinstance(fn, types.MethodType):
        _feed(digest, b"method")
        _feed_callable(digest, fn.__func__, seen)
        _feed_value(digest, fn.__self__, seen)
    elif isinstance(fn, types.FunctionType):
        _feed(digest, b"function")
        _feed_code(digest, fn.__code__)
        _feed_value(digest, fn.__defaults__, seen)
        _feed_value(digest, sorted((fn.__kwdefaults__ or {}).items()), seen)
        for cell in fn.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # a cell not filled yet
                _feed(digest, b"empty-cell")
            else:
                _feed_value(digest, value, seen)
    elif isinstance(_class_call(fn), types.FunctionType) and not isinstance(fn, type):
        # a callable object: its class's __call__, and the object's own value
        _feed(digest, b"object")
        _feed_callable(digest, type(fn).__call__, seen)
        others = _CodeOnly(seen) if isinstance(seen, _CodeOnly) else set(seen)
        others.discard(id(fn))  # by value: not "seen" as a callable
        _feed_value(digest, fn, others)
    else:  # a builtin, a class, a C-implemented callable: by its name
        _feed(digest, b"named", _qualified_name(fn).encode())


def _class_call(fn: object) -> object:
    """The ``__call__`` that ``fn()`` runs: its class's, found along the class's MRO."""
    for klass in type(fn).__mro__:
        if "__call__" in vars(klass):
            return vars(klass)["__call__"]
    return None


def _feed_code(digest: Any, code: types.CodeType) -> None:
    """Everything of ``code`` but its file name, line numbers and position tables."""
    _feed(digest, b"code", code.co_code)
    _feed(digest, b"name", code.co_name.encode())
    _feed(digest, b"args", repr((code.co_argcount, code.co_posonlyargcount,
                                 code.co_kwonlyargcount, code.co_flags & _KIND_FLAGS)).encode())
    for names in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
        _feed(digest, b"names", "\0".join(names).encode())
    _feed(digest, b"exceptions", code.co_exceptiontable)
    _feed(digest, b"consts", str(len(code.co_consts)).encode())
    for const in code.co_consts:
        _feed_const(digest, const)


def _feed_const(digest: Any, const: object) -> None:
    if isinstance(const, types.CodeType):
        _feed_code(digest, const)
    elif isinstance(const, tuple):
        _feed(digest, b"tuple", str(len(const)).encode())
        for item in const:
            _feed_const(digest, item)
    elif isinstance(const, frozenset):
        parts = sorted(_const_digest(item) for item in const)
        _feed(digest, b"frozenset", b"".join(parts))
    elif isinstance(const, _PLAIN):
        _feed(digest, type(const).__name__.encode(), repr(const).encode())
    else:  # not made by the compiler; a code object built by hand: by type and repr
        _feed(digest, b"other", f"{_qualified_name(type(const))}:{const!r}".encode())


def _const_digest(const: object) -> bytes:
    digest = hashlib.sha256()
    _feed_const(digest, const)
    return digest.digest()


class _CodeOnly(set[int]):
    """The ``seen`` set of a code-only fingerprint (``values=False``)."""


def _feed_value(digest: Any, value: object, seen: set[int]) -> None:
    """A default or closure value: by its own fingerprint if a function, else by value."""
    if isinstance(value, (types.FunctionType, functools.partial, types.MethodType)):
        _feed_callable(digest, value, seen)
        return
    if _is_plain(value):  # no need for joblib (and its import) for None, 3, ("a", 1)
        _feed(digest, b"plain", type(value).__name__.encode())
        _feed_const(digest, tuple(value) if isinstance(value, list) else value)
        return
    if isinstance(seen, _CodeOnly):
        _feed(digest, b"typed", _qualified_name(type(value)).encode())
        return
    try:
        hashed = _joblib_hash(value)
    except Exception as exc:  # joblib pickles the value to hash it: many things refuse
        kind = _qualified_name(type(value)).encode()
        state = getattr(value, "__dict__", None)
        if isinstance(state, dict) and id(value) not in seen:  # e.g. a local class's object
            seen.add(id(value))
            _feed(digest, b"attributes", kind)
            for name in sorted(state, key=str):
                _feed(digest, b"attribute", str(name).encode())
                _feed_value(digest, state[name], seen)
            return
        _log.debug("fingerprint: a %s value is counted by its type only (%s)", kind, exc)
        _feed(digest, b"unhashable", kind)
    else:
        _feed(digest, b"value", hashed.encode())


def _is_plain(value: object, depth: int = 0) -> bool:
    if isinstance(value, (tuple, list)):
        return depth < 4 and len(value) <= 64 and all(_is_plain(v, depth + 1) for v in value)
    return isinstance(value, _PLAIN)


def _joblib_hash(value: object) -> str:
    import joblib  # a dependency; imported on use so that importing stagewidget stays fast

    hashed = joblib.hash(value)
    if not isinstance(hashed, str):  # pragma: no cover - joblib returns a hex str
        raise TypeError(f"joblib.hash returned {type(hashed).__name__}")
    return hashed


def _qualified_name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', repr(obj))}"
