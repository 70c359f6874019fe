"""The public surface: __all__ is curated, complete, and importing has no side effects."""

from __future__ import annotations

import inspect
import pickle
import subprocess
import sys

import pytest

import stagewidget as sw

# What the README and the engine issue promise users; internals stay in their modules.
INTERNALS = {
    "Level": "stagewidget.status",
    "NullProgress": "stagewidget.engine.progress",
    "StageContext": "stagewidget.engine.executors",
    "StageProgress": "stagewidget.engine.progress",
}


def test_every_name_in_all_imports() -> None:
    for name in sw.__all__:
        assert getattr(sw, name) is not None, name


def test_all_is_sorted_and_lists_every_public_name() -> None:
    assert list(sw.__all__) == sorted(sw.__all__)
    public = {n for n, v in vars(sw).items()
              if not n.startswith("_") and not inspect.ismodule(v) and n != "annotations"}
    assert public <= set(sw.__all__), public - set(sw.__all__)


def test_nothing_listed_is_private() -> None:
    private = [n for n in sw.__all__ if n.startswith("_") and n != "__version__"]
    assert not private, private


def test_dir_lists_the_public_names_for_completion() -> None:
    assert set(sw.__all__) <= set(dir(sw))
    assert not {n for n in dir(sw) if n.startswith("_") and n != "__version__"}
    assert not set(INTERNALS) & set(dir(sw))


def test_the_executors_the_readme_constructs_are_public() -> None:
    from stagewidget.engine.process import ProcessExecutor

    assert sw.ProcessExecutor is ProcessExecutor
    assert isinstance(sw.ProcessExecutor(), sw.Executor)
    for name in ("ThreadExecutor", "InlineExecutor", "DaskExecutor", "Executor", "TextView"):
        assert name in sw.__all__, name


@pytest.mark.parametrize("name", sorted(INTERNALS))
def test_internals_leave_the_top_level_with_a_deprecation_warning(name: str) -> None:
    import importlib

    assert name not in sw.__all__
    with pytest.warns(DeprecationWarning, match=f"import it from {INTERNALS[name]}"):
        value = getattr(sw, name)
    assert value is getattr(importlib.import_module(INTERNALS[name]), name)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        sw.Nope  # noqa: B018


def test_public_classes_show_the_public_module() -> None:
    classes = [getattr(sw, n) for n in sw.__all__ if inspect.isclass(getattr(sw, n))]
    assert {c.__module__ for c in classes} == {"stagewidget"}
    assert repr(sw.WorkerDied) == "<class 'stagewidget.WorkerDied'>"


def test_public_classes_still_pickle_by_reference() -> None:
    # Workers (process, Dask) unpickle errors and states by their module and name.
    error = pickle.loads(pickle.dumps(sw.WorkerDied("the worker died")))
    assert type(error) is sw.WorkerDied and str(error) == "the worker died"
    assert pickle.loads(pickle.dumps(sw.RunState.RUNNING)) is sw.RunState.RUNNING


def test_import_starts_no_thread_and_loads_no_optional_part() -> None:
    code = (
        "import sys, threading, stagewidget\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "loaded = [m for m in ('ipywidgets', 'IPython', 'nest_asyncio2', 'nest_asyncio',"
        " 'stagewidget.engine.process', 'stagewidget.engine.cluster',"
        " 'stagewidget.adapters', 'tornado', 'jupyter_server', 'stagewidget.jupyter')"
        " if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        # what Jupyter Server asks first: answered without loading the extension itself
        "assert stagewidget._jupyter_server_extension_points() == "
        "[{'module': 'stagewidget.jupyter'}]\n"
        "assert 'tornado' not in sys.modules and 'stagewidget.jupyter' not in sys.modules\n"
        "import logging; assert not logging.getLogger().handlers\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
