"""Starting a run: once only, never without the GIL, with real observers only."""

from __future__ import annotations

import sys
import sysconfig

import pytest
from conftest import WAIT_S, join_stagewidget_threads, stagewidget_threads

import stagewidget as sw
from stagewidget.engine import gil
from stagewidget.engine.run import Run, recent_runs


def double(x: int) -> int:
    return 2 * x


def test_launching_a_run_twice_raises_already_started() -> None:
    run = Run.start(sw.Pipeline("p", [double]), 2, launch=False)
    run.launch()
    assert run.result(WAIT_S) == 4
    with pytest.raises(sw.AlreadyStarted, match=f"run {run.run_id} was already launched"):
        run.launch()
    assert run.result(WAIT_S) == 4  # the run is untouched


def test_refuses_to_start_a_run_without_the_gil(monkeypatch: pytest.MonkeyPatch) -> None:
    join_stagewidget_threads()
    before = recent_runs()
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    with pytest.raises(sw.UnsupportedInterpreter, match=r"free-threaded Python running without "
                       r"the GIL.*PYTHON_GIL=1"):
        sw.Pipeline("p", [double]).start(2, display=False)
    assert recent_runs() == before  # nothing was launched: no run, no thread
    assert not stagewidget_threads()


def test_a_free_threaded_build_with_the_gil_on_is_accepted(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    # PYTHON_GIL=1 on a 3.13t build: the build flag is set, but the GIL runs.
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: True, raising=False)
    real = sysconfig.get_config_var
    monkeypatch.setattr(sysconfig, "get_config_var",
                        lambda name: 1 if name == "Py_GIL_DISABLED" else real(name))
    assert not gil.gil_disabled()
    assert sw.Pipeline("p", [double]).start(2, display=False).result(WAIT_S) == 4


def test_without_a_runtime_answer_the_build_flag_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(sys, "_is_gil_enabled", raising=False)
    real = sysconfig.get_config_var
    monkeypatch.setattr(sysconfig, "get_config_var",
                        lambda name: 1 if name == "Py_GIL_DISABLED" else real(name))
    with pytest.raises(sw.UnsupportedInterpreter):
        gil.require_gil()


def test_this_interpreter_has_the_gil() -> None:
    assert not gil.gil_disabled()
    gil.require_gil()


@pytest.mark.parametrize("observer", [3, "view", object()])
def test_subscribing_a_non_observer_raises_observer_error(observer: object) -> None:
    run = sw.Pipeline("p", [double]).start(2, display=False)
    run.result(WAIT_S)
    with pytest.raises(sw.ObserverError, match="an observer must be callable or have "
                       r"on_status\(snapshot\)"):
        run.subscribe(observer)
    with pytest.raises(TypeError):  # what it raised before, still caught
        run.subscribe(observer)


def test_a_bad_display_raises_the_same_observer_error() -> None:
    with pytest.raises(sw.ObserverError, match="display must be None, True, False or an "
                       "observer"):
        sw.Pipeline("p", [double]).start(2, display="widget")
