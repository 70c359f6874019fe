"""``sw.map``: apply a function to many items inside a stage, with the stage's progress.

In a stage running on a Dask worker (``executor=client``) the items become tasks on the
same cluster (submitted with the worker's client; this task secedes from the worker's
thread pool while it waits, as ``distributed.worker_client`` does), and each one that
completes, on any worker, counts as one unit of the stage's progress. Anywhere else the
items are mapped here, one after the other, with the same progress, so one pipeline runs
on threads, a process or a cluster.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..errors import Cancelled
from .progress import NullProgress, StageProgress, current_stage, track

__all__ = ["map"]

T = TypeVar("T")
R = TypeVar("R")


def _on_dask_worker() -> bool:
    if "distributed" not in sys.modules:  # never imports Dask to find out
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def map(fn: Callable[[T], R], items: Iterable[T], *, desc: str | None = None) -> list[R]:
    """Return ``[fn(item) for item in items]``, counting each item as the stage's progress.

    On a Dask worker the items run as tasks across the cluster (results in input
    order; the first failing item's exception is raised and the others cancelled; a
    cancelled run cancels them all within a fraction of a second, and the stage ends
    without waiting for items already running, which Dask cannot interrupt: they run
    to their end on their worker, their results dropped). Elsewhere they run here, in
    order.
    """
    items = list(items)
    label = desc if desc is not None else getattr(fn, "__name__", "items")
    if not _on_dask_worker():
        return [fn(item) for item in track(items, desc=label)]
    from distributed import as_completed, get_client

    progress = current_stage()
    client = get_client()
    futures = client.map(fn, items, pure=False)
    seceded = _secede()  # the items may use this task's thread slot meanwhile
    stop = threading.Event()
    watcher = threading.Thread(target=_cancel_when_asked, name="stagewidget-map-cancel",
                               args=(progress, client, futures, stop), daemon=True)
    watcher.start()
    try:
        for future in track(as_completed(futures), total=len(futures), desc=label):
            if future.status == "cancelled" and progress.cancelled():
                raise Cancelled(f"stage {getattr(progress, 'name', '?')!r} was cancelled")
            if future.status == "error":
                future.result()  # raises the item's exception, remote traceback kept
        results: list[R] = client.gather(futures)
    except (Exception, Cancelled):
        # No rejoin here (unlike worker_client): it waits for a free thread, and items
        # already running cannot be interrupted, so it could hold a cancelled stage
        # for as long as they run. A seceded task may end outside the pool.
        client.cancel(futures)
        raise
    finally:
        stop.set()
        watcher.join()
    if seceded:
        from distributed import rejoin

        rejoin()  # what the stage does next counts against the worker's threads again
    return results


def _secede() -> bool:
    """Leave the worker's thread pool if this is a task's thread still in it."""
    from dask.context import thread_state  # where Dask defines it; distributed.worker's too
    from distributed import secede

    if not hasattr(thread_state, "start_time"):  # a thread the stage started itself
        return False
    try:
        secede()
    except KeyError:  # already seceded
        return False
    return True


def _cancel_when_asked(progress: StageProgress | NullProgress, client: Any, futures: list[Any],
                       stop: threading.Event) -> None:
    """Cancel the item tasks as soon as the stage is asked to stop (a watcher thread).

    The stage's loop only sees the request when an item completes, which may be long
    with slow items; cancelled futures complete at once, so the loop then ends too.
    """
    while not stop.wait(0.1):
        if progress.cancelled():
            client.cancel(futures)
            return
