"""Pipelines the dashboard tests serve (``python -m stagewidget serve
tests.browser.dash_pipelines:PIPELINES``): a training run that goes on until cancelled or
told how many steps to take, one that fails, one that takes no input."""

from __future__ import annotations

import math
import threading

import stagewidget as sw

train = sw.Pipeline("train")


@train.stage
def load(data: dict):
    """A short first stage, so a run shows a finished bar beside a moving one."""
    pace = threading.Event()  # never set: it only paces the loop (the work stand-in)
    for _ in sw.track(range(5), desc="files"):
        pace.wait(0.02)
    return data


@train.stage
def fit(data: dict):
    """``steps`` steps (default: many more than any test waits for) of ``step_s`` each,
    reporting a falling loss and a rising accuracy; ends early on cancel."""
    steps, step_s = int(data.get("steps", 100_000)), float(data.get("step_s", 0.05))
    pace = threading.Event()
    for i in sw.track(range(steps), desc="steps"):
        pace.wait(step_s)
        sw.report(loss=round(2.0 * math.exp(-i / 40) + 0.05, 4),
                  accuracy=round(1 - math.exp(-i / 30), 4))
    return {"steps": steps}


fails = sw.Pipeline("fails")


@fails.stage
def parse(data: dict):
    print(f"parsing row {data.get('row', 3)}")  # the run's log
    raise ValueError(f"row {data.get('row', 3)} is malformed: <b>not bold</b>")


hello = sw.Pipeline("hello")


@hello.stage
def greet():
    return "hello"


PIPELINES = [train, fails, hello]
