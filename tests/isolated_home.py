"""A pytest plugin (``-p tests.isolated_home`` in pyproject.toml): every test session, the
notebooks nbval runs included, records into a throwaway data folder, never the user's, and
runs the demos and shipped notebooks at a small scale (``STAGEWIDGET_NOTEBOOK_SCALE``:
they run 10-20 s at the default 1, so a newcomer sees the bars move).

Set at configure time in ``os.environ``, so the kernels and processes tests start inherit
it (nbval's cells take no fixtures). A plugin, not ``notebooks/conftest.py``: a second
module named ``conftest`` would shadow ``tests/conftest.py`` for ``from conftest import``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_made: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    home = tempfile.mkdtemp(prefix="stagewidget-home-")
    _made.append(home)
    os.environ["STAGEWIDGET_HOME"] = home
    os.environ.setdefault("STAGEWIDGET_NOTEBOOK_SCALE", "0.02")


def pytest_unconfigure(config: pytest.Config) -> None:
    for home in _made:
        shutil.rmtree(home, ignore_errors=True)
