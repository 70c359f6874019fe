"""``sw.map``: apply a function to many items inside a stage, with the stage's progress.

In a stage running on a Dask worker (``executor=client``) the items become tasks on the
same cluster (through ``distributed.worker_client``, which lets this task wait without
holding a worker thread), and each one that completes, on any worker, counts as one unit
of the stage's progress. Anywhere else the items are mapped here, one after the other,
with the same progress, so one pipeline runs on threads, a process or a cluster.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TypeVar

from ..errors import Cancelled
from .progress import track

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
    cancelled run cancels them all). Elsewhere they run here, in order.
    """
    items = list(items)
    label = desc if desc is not None else getattr(fn, "__name__", "items")
    if not _on_dask_worker():
        return [fn(item) for item in track(items, desc=label)]
    from distributed import as_completed, worker_client

    with worker_client() as client:
        futures = client.map(fn, items, pure=False)
        try:
            for future in track(as_completed(futures), total=len(futures), desc=label):
                if future.status == "error":
                    future.result()  # raises the item's exception, remote traceback kept
            return client.gather(futures)
        except (Exception, Cancelled):
            client.cancel(futures)
            raise
