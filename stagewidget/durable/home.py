"""The per-user data folder where stagewidget keeps what outlives a process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["HOME_ENV", "data_home", "home_dir"]

HOME_ENV = "STAGEWIDGET_HOME"


def data_home(*, create: bool = True) -> Path:
    """Return stagewidget's data folder, created (mode 0700) on first use.

    ``$STAGEWIDGET_HOME`` when set; else ``$XDG_DATA_HOME/stagewidget`` or
    ``~/.local/share/stagewidget`` on Linux and other Unixes,
    ``~/Library/Application Support/stagewidget`` on macOS and
    ``%LOCALAPPDATA%\\stagewidget`` on Windows. Read at each call (never cached), so
    setting the variable takes effect at once.

    Raises:
        OSError: the folder does not exist and cannot be created (``create=True``).
    """
    path = _chosen()
    if create:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def home_dir() -> Path:
    """The data folder's path, not created (``data_home(create=False)``)."""
    return data_home(create=False)


def _chosen() -> Path:
    explicit = os.environ.get(HOME_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA", "").strip()
        return (Path(base) if base else Path.home() / "AppData" / "Local") / "stagewidget"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "stagewidget"
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    # the XDG spec: a relative path is invalid and must be ignored
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "stagewidget"
