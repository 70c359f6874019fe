"""How much run history is kept: the newest finished runs of each pipeline.

The history writer prunes a pipeline's finished runs down to ``history_keep()`` (the
newest ``$STAGEWIDGET_HISTORY_KEEP``, default 1,000) when it records one's end, in the
same transaction, once they are ``slack()`` over it: a count per run's end, and the
removal itself once every ``slack()`` runs. Unfinished runs are never removed here:
their owners still write them.
"""

from __future__ import annotations

import os
import sqlite3

from ..errors import ConfigError
from .records import TERMINAL, remove_runs, sql_text

__all__ = ["DEFAULT_KEEP", "KEEP_ENV", "history_keep", "prune_runs", "slack"]

KEEP_ENV = "STAGEWIDGET_HISTORY_KEEP"
DEFAULT_KEEP = 1000

_STATES = ", ".join("?" * len(TERMINAL))


def history_keep() -> int:
    """How many finished runs of each pipeline the history keeps (``$STAGEWIDGET_HISTORY_KEEP``).

    Raises:
        ConfigError: the variable is set to something other than a whole number >= 0.
    """
    text = os.environ.get(KEEP_ENV, "").strip()
    if not text:
        return DEFAULT_KEEP
    if not (text.isascii() and text.isdigit()):
        raise ConfigError(f"{KEEP_ENV}={text!r} is not a whole number; set it to how many "
                          f"finished runs of each pipeline to keep (default {DEFAULT_KEEP})")
    return int(text)


def slack(keep: int) -> int:
    """How far over ``keep`` a pipeline's finished runs may grow before the writer prunes."""
    return max(1, keep // 20)


def prune_runs(conn: sqlite3.Connection, keep: int, pipeline: str | None = None, *,
               over: int = 0) -> int:
    """Remove the finished runs of ``pipeline`` (of each pipeline, if None) beyond its
    newest ``keep``, once there are more than ``keep + over``, in the caller's
    transaction; return how many were removed."""
    name = sql_text(pipeline)  # as write_run recorded it
    if name is None:
        run_ids = [row[0] for row in conn.execute(
            f"SELECT run_id FROM (SELECT run_id, row_number() OVER (PARTITION BY pipeline "
            f"ORDER BY created_at DESC, rowid DESC) AS n FROM runs WHERE state IN "
            f"({_STATES})) WHERE n > ?", [*TERMINAL, keep])]
    else:
        count = conn.execute(f"SELECT count(*) FROM runs WHERE pipeline = ? AND state IN "
                             f"({_STATES})", [name, *TERMINAL]).fetchone()[0]
        if count <= keep + over:
            return 0
        run_ids = [row[0] for row in conn.execute(
            f"SELECT run_id FROM runs WHERE pipeline = ? AND state IN ({_STATES}) "
            f"ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?", [name, *TERMINAL, keep])]
    remove_runs(conn, run_ids)
    return len(run_ids)
