"""Expected stage durations from the run history, for ETAs before and during a stage.

A stage's expected duration is the median of its durations in the last ``RUNS_KEPT``
succeeded runs of the same pipeline in which that stage had the same code fingerprint
(an edited stage starts afresh). Read when a run is created, from a memo of this
process's last reading while no run has ended here since and it is under
``MEMO_S`` old (so a thousand runs started at once read the database once).
"""

from __future__ import annotations

import sqlite3
import statistics
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from .db import connect
from .writer import warn_once, writer

__all__ = ["MEMO_S", "RUNS_KEPT", "expected_durations", "forget"]

RUNS_KEPT = 10
MEMO_S = 5.0  # other processes' runs count after at most this long

_Key = tuple[Path, str, tuple[str, ...], tuple[str | None, ...]]
_memo: dict[_Key, tuple[int, float, tuple[float | None, ...]]] = {}
_memo_lock = threading.Lock()

# Driven from the runs, newest first, through the runs_finished index (CROSS JOIN
# keeps SQLite from reordering the loop): it stops after RUNS_KEPT matches instead of
# sorting every run in which the stage had this code.
_QUERY = """
SELECT s.elapsed_s FROM runs AS r CROSS JOIN stages AS s
WHERE r.pipeline = ? AND r.state = 'succeeded' AND s.run_id = r.run_id AND s.name = ?
  AND s.fingerprint = ? AND s.state = 'succeeded' AND s.elapsed_s IS NOT NULL
ORDER BY r.finished_at DESC LIMIT ?
"""


def expected_durations(path: Path, pipeline: str, names: Sequence[str],
                       fingerprints: Sequence[str | None]) -> tuple[float | None, ...]:
    """The median recorded duration of each stage (None where there is no history).

    Never raises: a database that cannot be read gives no expectations (logged once).
    """
    key = (path, pipeline, tuple(names), tuple(fingerprints))
    finals, now = writer().finals_written, time.monotonic()
    with _memo_lock:
        memo = _memo.get(key)
    if memo is not None and memo[0] == finals and now - memo[1] < MEMO_S:
        return memo[2]
    expected = _read(path, pipeline, names, fingerprints)
    with _memo_lock:
        if len(_memo) >= 256:  # bounded: pipelines rarely number that many
            _memo.clear()
        _memo[key] = (finals, now, expected)
    return expected


def forget() -> None:
    """Drop the memo: the next run reads the history again (after runs were removed)."""
    with _memo_lock:
        _memo.clear()


def _read(path: Path, pipeline: str, names: Sequence[str],
          fingerprints: Sequence[str | None]) -> tuple[float | None, ...]:
    nothing: tuple[float | None, ...] = (None,) * len(names)
    if not path.exists():
        return nothing
    try:
        conn = connect(path)
    except sqlite3.Error as err:
        _warn(path, err)
        return nothing
    try:
        expected: list[float | None] = []
        for name, fingerprint in zip(names, fingerprints, strict=True):
            rows = [] if fingerprint is None else conn.execute(
                _QUERY, (pipeline, name, fingerprint, RUNS_KEPT)).fetchall()
            expected.append(float(statistics.median(r[0] for r in rows)) if rows else None)
        return tuple(expected)
    except (sqlite3.Error, ConfigError) as err:  # no tables yet, or a damaged file
        if "no such table" not in str(err):
            _warn(path, err)
        return nothing
    finally:
        conn.close()


def _warn(path: Path, err: BaseException) -> None:
    warn_once(f"eta:{path}", "cannot read run history %s for ETAs (%s)", path, err)
