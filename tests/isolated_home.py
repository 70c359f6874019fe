"""A pytest plugin (``-p tests.isolated_home`` in pyproject.toml): every test session, the
notebooks nbval runs included, records into a throwaway data folder, never the user's.

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


def pytest_unconfigure(config: pytest.Config) -> None:
    for home in _made:
        shutil.rmtree(home, ignore_errors=True)
