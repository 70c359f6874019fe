"""How a stage's function is called, wherever it runs: one sync/async call, one sentinel.

Every executor (the run's thread, a worker process, a Dask task) calls a stage through
``call_stage``, so "no input" and ``async def`` stages mean the same everywhere.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["NO_INPUT", "call_stage"]


class _NoInput:
    """Marker for "start() was called without data": the first stage gets no argument."""

    def __repr__(self) -> str:
        return "NO_INPUT"

    def __reduce__(self) -> str:
        # Pickled by name: a worker process or a Dask task unpickles the same object,
        # so ``data is NO_INPUT`` holds on both sides of the wire.
        return "NO_INPUT"


NO_INPUT: Any = _NoInput()


def call_stage(fn: Callable[..., Any], data: Any,
               run_coroutine: Callable[[Coroutine[Any, Any, Any]], Any] = asyncio.run) -> Any:
    """Call a stage's ``fn`` on ``data`` (no argument for ``NO_INPUT``); return its output.

    An ``async def`` function's coroutine is run to completion by ``run_coroutine``
    (default ``asyncio.run``; the run's driver thread passes its own loop's runner).
    """
    args = () if data is NO_INPUT else (data,)
    if inspect.iscoroutinefunction(fn):
        return run_coroutine(fn(*args))
    return fn(*args)
