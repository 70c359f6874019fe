"""Shared fixtures: a fake clock, an observer that records snapshots, thread accounting."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import stagewidget as sw

WAIT_S = 20.0  # upper bound for any single wait on an event in the tests

# stagewidget waits for unfinished runs at interpreter exit (300 s by default): a test
# leaving one behind must not hold the end of pytest, nor of a service it started, so long.
os.environ.setdefault("STAGEWIDGET_EXIT_TIMEOUT_S", "5")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-torch", action="store_true",
                     help="run the tests marked torch (Hugging Face and Lightning adapters) "
                          "even where PyTorch does not import: they fail there")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``torch`` run with --run-torch or where torch imports; else skipped."""
    if config.getoption("--run-torch") or importlib.util.find_spec("torch") is not None:
        return
    skip = pytest.mark.skip(reason="needs PyTorch (not installed by scripts/setup); "
                                   "install torch or pass --run-torch")
    for item in items:
        if "torch" in item.keywords:
            item.add_marker(skip)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


class Gate:
    """Code under test blocks in ``block()`` until the test calls ``open()``."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.released = threading.Event()

    def block(self) -> None:
        self.reached.set()
        if not self.released.wait(WAIT_S):
            raise TimeoutError("the test never opened the gate")

    def wait_reached(self) -> None:
        assert self.reached.wait(WAIT_S), "the code under test never reached the gate"

    def open(self) -> None:
        self.released.set()


class Recorder:
    """An observer keeping every snapshot it gets; lets tests wait for a condition."""

    def __init__(self) -> None:
        self.snapshots: list[sw.RunStatus] = []
        self.threads: set[str] = set()
        self._cond = threading.Condition()

    def __call__(self, status: sw.RunStatus) -> None:
        with self._cond:
            self.snapshots.append(status)
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[sw.RunStatus], bool], timeout: float = WAIT_S
                 ) -> sw.RunStatus:
        """Block until a snapshot satisfies ``predicate``; return it."""
        found: list[sw.RunStatus] = []

        def check() -> bool:
            found[:] = [s for s in self.snapshots if predicate(s)]
            return bool(found)

        with self._cond:
            if not self._cond.wait_for(check, timeout):
                raise AssertionError(f"no snapshot matched within {timeout} s; "
                                     f"last: {self.snapshots[-1:]}")
        return found[0]

    @property
    def last(self) -> sw.RunStatus:
        return self.snapshots[-1]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder (run history) of this test's own, empty until a run is recorded."""
    path = tmp_path / "home"
    monkeypatch.setenv("STAGEWIDGET_HOME", str(path))
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def stagewidget_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("stagewidget-")]


def join_stagewidget_threads(timeout: float = WAIT_S) -> None:
    """Join every stagewidget thread (runs that ended stop theirs promptly)."""
    for thread in stagewidget_threads():
        thread.join(timeout)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> object:
    """After every fixture's teardown: a closed current event loop is replaced by a fresh
    one. pytest-jupyter closes its loop but leaves it current, and a later test's
    ``asyncio.run``, patched by nest-asyncio2 once a test applied it, would take it."""
    yield
    policy = asyncio.get_event_loop_policy()
    loop = getattr(getattr(policy, "_local", None), "_loop", None)
    if loop is not None and loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())
