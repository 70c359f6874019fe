"""The data folder, the database's schema handling and the stage code fingerprint."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import stagewidget as sw
from stagewidget.durable import db
from stagewidget.durable.fingerprint import stage_fingerprint
from stagewidget.durable.home import data_home


def test_the_data_folder_follows_stagewidget_home_then_xdg(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("STAGEWIDGET_HOME", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_home() == tmp_path / "mine" and (tmp_path / "mine").is_dir()
    monkeypatch.delenv("STAGEWIDGET_HOME")
    assert data_home(create=False) == tmp_path / "xdg" / "stagewidget"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")  # the XDG spec says so
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert data_home(create=False) == tmp_path / "user" / ".local" / "share" / "stagewidget"
    assert not (tmp_path / "user").exists()


def test_the_schema_is_created_once_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    ddl = "CREATE TABLE IF NOT EXISTS things (x INTEGER)"
    for _ in range(2):  # idempotent
        conn = db.connect(path)
        db.ensure_schema(conn, "things", 1, ddl)
        conn.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT * FROM schema_version").fetchall() == [("things", 1)]
        conn.execute("UPDATE schema_version SET version = 7")
    conn = db.connect(path)
    with pytest.raises(sw.ConfigError, match=r"the things tables of '.*x.sqlite3' have schema "
                                             r"version 7, newer than this stagewidget's \(1\)"):
        db.ensure_schema(conn, "things", 1, ddl)
    conn.close()


SOURCE = "def stage(x, k=2):\n    return helper(x) * k + {extra}\n"


def compiled(source: str, padding: int, filename: str) -> object:
    namespace: dict[str, object] = {}
    exec(compile("\n" * padding + source, filename, "exec"), namespace)
    return namespace["stage"]


def test_the_fingerprint_ignores_file_and_line_but_not_code_or_defaults() -> None:
    same = stage_fingerprint(compiled(SOURCE.format(extra=1), 0, "<cell 1>"))
    assert stage_fingerprint(compiled(SOURCE.format(extra=1), 30, "<cell 9>")) == same
    assert stage_fingerprint(compiled(SOURCE.format(extra=2), 0, "<cell 1>")) != same
    moved = compiled(SOURCE.format(extra=1), 0, "<cell 1>")
    moved.__defaults__ = (3,)
    assert stage_fingerprint(moved) != same
