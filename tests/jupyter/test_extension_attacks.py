"""Attacks on the dashboard inside Jupyter Server (issue 14's red team): hostile rows in
the run history, which any process of the user (a kernel of another stagewidget version,
a damaged write) can leave there. A real server, a real process writing the history.
Such a run is left out (``durable.records.runs_from_rows``); the others are served.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from conftest import WAIT_S
from pytest_jupyter.jupyter_server import *  # noqa: F403 (its fixtures, for this module only)
from test_extension import client
from traitlets.config import Config


# -- the server, as tests/jupyter/test_extension.py serves it ----------------------------
@pytest.fixture
def jp_base_url() -> str:
    return "/user/alice/"


@pytest.fixture
def jp_server_config() -> Config:
    return Config({"ServerApp": {"jpserver_extensions": {"stagewidget": True}}})


@pytest.fixture
def run(jp_asyncio_loop) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    return lambda scenario: jp_asyncio_loop.run_until_complete(
        asyncio.wait_for(scenario, 2 * WAIT_S))


@pytest.fixture
def base(http_server, jp_http_port) -> str:
    return f"http://127.0.0.1:{jp_http_port}/user/alice/stagewidget/"


@pytest.fixture
def token(jp_serverapp) -> str:
    return jp_serverapp.identity_provider.token


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


def test_a_row_with_an_unknown_state_does_not_break_the_listing(
        run, base, token, recorded) -> None:
    db, (odd, fine) = recorded
    tamper(db, "UPDATE runs SET state = 'from-a-newer-version' WHERE run_id = ?", odd)

    async def scenario() -> None:
        async with client(token) as http:
            listing = await http.get(base + "api/runs")
            assert listing.status_code == 200, listing.text
            assert fine in {r["run_id"] for r in listing.json()["runs"]}
            one = await http.get(base + f"api/runs/{odd}")
            assert one.status_code < 500, one.text

    run(scenario())


def test_a_stage_row_with_metrics_nested_too_deep_does_not_break_the_listing(
        run, base, token, recorded) -> None:
    db, (odd, fine) = recorded
    tamper(db, "UPDATE stages SET metrics = ? WHERE run_id = ?", "[" * 100_000, odd)

    async def scenario() -> None:
        async with client(token) as http:
            listing = await http.get(base + "api/runs")
            assert listing.status_code == 200, listing.text
            assert fine in {r["run_id"] for r in listing.json()["runs"]}
            one = await http.get(base + f"api/runs/{odd}")
            assert one.status_code < 500, one.text

    run(scenario())
