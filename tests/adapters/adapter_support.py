"""Helpers of the adapter tests: a one-stage start and a second stage."""

from __future__ import annotations

from conftest import WAIT_S, Gate, Recorder

import stagewidget as sw
from stagewidget import RunState, StageState


def start(stages, recorder: Recorder, data=None) -> sw.Run:
    """Start a pipeline of ``stages`` observed by ``recorder`` (no display)."""
    run = sw.Pipeline("adapters", stages).start(data, display=False)
    run.subscribe(recorder)
    return run


def then(result):
    """A second stage: a cancel honoured after the first stage is seen before it."""
    return result


def cancel_at_the_gate(stages, recorder: Recorder, gate: Gate) -> sw.Run:
    """Start ``stages`` (a training stage, then ``then``), cancel once the library reached
    ``gate``, let it go on; check the clean stop kept the first stage's result."""
    run = start(stages, recorder)
    gate.wait_reached()
    run.cancel()
    gate.open()
    assert run.wait(WAIT_S)
    status = run.status()
    assert status.state is RunState.CANCELLED
    assert [s.state for s in status.stages] == [StageState.SUCCEEDED, StageState.CANCELLED]
    return run
