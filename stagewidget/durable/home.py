"""The per-user data folder: ``STAGEWIDGET_HOME``, else ``~/.local/share/stagewidget``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["HOME_ENV", "home_dir"]

HOME_ENV = "STAGEWIDGET_HOME"


def home_dir() -> Path:
    """Return the folder stagewidget keeps its durable data in (not created here).

    Read when called, never at import: ``STAGEWIDGET_HOME`` (tests set it) moves it.
    """
    configured = os.environ.get(HOME_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".local" / "share" / "stagewidget"
