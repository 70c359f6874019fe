"""Cancels asked for by another process, carried to a run's owner through the history DB.

The Jupyter extension (a process with no hold on the kernels) inserts a row; the owning
process's history writer, which samples its unfinished runs about once a second, reads
the table in the same round, cancels those of its runs that are there and deletes the
rows. The table holds only requests not taken yet: a row nobody takes (its owner died)
is dropped after ``CANCEL_KEEP_S`` by the next request.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from .db import transaction

__all__ = ["CANCEL_KEEP_S", "clear_cancels", "pending_cancels", "request_cancel"]

CANCEL_KEEP_S = 3600.0  # a request nobody took in this long is dropped (its owner is gone)


def request_cancel(conn: sqlite3.Connection, run_id: str, now: float) -> None:
    """Ask the owner of ``run_id`` to cancel it (``now``: wall-clock seconds)."""
    with transaction(conn):
        conn.execute("DELETE FROM cancels WHERE requested_at < ?", (now - CANCEL_KEEP_S,))
        conn.execute("INSERT OR REPLACE INTO cancels VALUES (?, ?)", (run_id, now))


def pending_cancels(conn: sqlite3.Connection) -> set[str]:
    """The runs whose cancel was asked for and not taken yet.

    The whole table in one query: it holds only requests not taken yet (a handful at
    most), which is cheaper to read than to look up each followed run in it.
    """
    return {row[0] for row in conn.execute("SELECT run_id FROM cancels")}


def clear_cancels(conn: sqlite3.Connection, run_ids: Iterable[str]) -> None:
    """Forget the requests for ``run_ids`` (taken by their owner)."""
    conn.executemany("DELETE FROM cancels WHERE run_id = ?", [(r,) for r in run_ids])
