"""Helpers of the adapter tests: a gate a library hook blocks on, a one-stage start."""

from __future__ import annotations

import threading

from conftest import WAIT_S, Recorder

import stagewidget as sw


class Gate:
    """Library code blocks in ``block()`` until the test calls ``open()``."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.released = threading.Event()

    def block(self) -> None:
        self.reached.set()
        if not self.released.wait(WAIT_S):
            raise TimeoutError("the test never opened the gate")

    def wait_reached(self) -> None:
        assert self.reached.wait(WAIT_S), "the library never reached the gate"

    def open(self) -> None:
        self.released.set()


def start(stages, recorder: Recorder, data=None) -> sw.Run:
    """Start a pipeline of ``stages`` observed by ``recorder`` (no display)."""
    run = sw.Pipeline("adapters", stages).start(data, display=False)
    run.subscribe(recorder)
    return run


def then(result):
    """A second stage: a cancel honoured after the first stage is seen before it."""
    return result
