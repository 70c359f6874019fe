"""Helpers of the adapter tests: a one-stage start and a second stage."""

from __future__ import annotations

from conftest import Recorder

import stagewidget as sw


def start(stages, recorder: Recorder, data=None) -> sw.Run:
    """Start a pipeline of ``stages`` observed by ``recorder`` (no display)."""
    run = sw.Pipeline("adapters", stages).start(data, display=False)
    run.subscribe(recorder)
    return run


def then(result):
    """A second stage: a cancel honoured after the first stage is seen before it."""
    return result
