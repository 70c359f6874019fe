"""nbval runs these notebooks in kernels started by pytest: keep their run history out of
the real data folder. (nbval's cells take no fixtures, so this is set at configure time;
the kernels inherit the environment.)"""

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
