"""The public surface: __all__ is complete and importing has no side effects."""

from __future__ import annotations

import inspect
import subprocess
import sys

import stagewidget as sw


def test_every_name_in_all_imports() -> None:
    for name in sw.__all__:
        assert getattr(sw, name) is not None, name


def test_all_is_sorted_and_lists_every_public_name() -> None:
    assert list(sw.__all__) == sorted(sw.__all__)
    public = {n for n, v in vars(sw).items()
              if not n.startswith("_") and not inspect.ismodule(v) and n != "annotations"}
    assert public <= set(sw.__all__), public - set(sw.__all__)


def test_import_starts_no_thread_and_loads_no_optional_part() -> None:
    code = (
        "import sys, threading, stagewidget\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "loaded = [m for m in ('ipywidgets', 'IPython', 'nest_asyncio2', 'nest_asyncio')"
        " if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "import logging; assert not logging.getLogger().handlers\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
