"""The durable tests write only under a tmp ``STAGEWIDGET_HOME``."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh stagewidget home per test (the default cache lives in ``<home>/cache``)."""
    folder = tmp_path / "home"
    monkeypatch.setenv("STAGEWIDGET_HOME", str(folder))
    monkeypatch.delenv("STAGEWIDGET_CACHE_MAX_BYTES", raising=False)
    return folder
