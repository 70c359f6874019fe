"""Attacks on the dashboard inside Jupyter Server (issue 14's red team): hostile rows in
the run history, which any process of the user (a kernel of another stagewidget version,
a damaged write) can leave there. A real server, a real process writing the history.
Such a run is left out (``durable.records.runs_from_rows``); the others are served.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import test_extension as ext
from conftest import WAIT_S
from pytest_jupyter.jupyter_server import *  # noqa: F403 (its fixtures, for this module only)

# the server, as tests/jupyter/test_extension.py serves it: its fixtures, for this module too
jp_base_url, jp_server_config = ext.jp_base_url, ext.jp_server_config
base, run, token = ext.base, ext.run, ext.token


RECORDS = textwrap.dedent("""
    import stagewidget as sw
    from stagewidget.durable import history

    def one():
        sw.report(loss=0.5)
        return 1

    for _ in range(2):
        done = sw.Pipeline("odd", [one]).start(display=False).wait(20)
        print(done.run_id, flush=True)
    assert history.flush(20)
""")


@pytest.fixture
def recorded(home: Path) -> tuple[Path, list[str]]:
    """The history database and the ids of two finished runs a process recorded there."""
    home.mkdir(exist_ok=True)
    env = {**os.environ, "STAGEWIDGET_HOME": str(home)}
    out = subprocess.run([sys.executable, "-c", RECORDS], env=env, text=True,
                         capture_output=True, timeout=WAIT_S, check=True).stdout
    return home / "history.sqlite3", out.split()


def tamper(db: Path, sql: str, *args: object) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute(sql, args).rowcount == 1


@pytest.mark.parametrize("sql", [
    "UPDATE runs SET state = 'from-a-newer-version' WHERE run_id = ?",  # a newer version's
    "UPDATE stages SET metrics = '" + "[" * 100_000 + "' WHERE run_id = ?"])  # too deep
def test_a_row_that_cannot_be_read_does_not_break_the_listing(
        run, base, token, recorded, sql) -> None:
    db, (odd, fine) = recorded
    tamper(db, sql, odd)

    async def scenario() -> None:
        async with ext.client(token) as http:
            listing = await http.get(base + "api/runs")
            assert listing.status_code == 200, listing.text
            assert fine in {r["run_id"] for r in listing.json()["runs"]}
            one = await http.get(base + f"api/runs/{odd}")
            assert one.status_code < 500, one.text

    run(scenario())
