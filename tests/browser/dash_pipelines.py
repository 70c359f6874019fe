"""Pipelines the dashboard tests serve (``python -m stagewidget serve
tests.browser.dash_pipelines:PIPELINES``): a training run that goes on until cancelled or
told how many steps to take, one that fails, one that takes no input, and one whose
every string is markup."""

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


# Markup in every string a run carries to the page: its stages' names, a progress label,
# metric names and values, the log, the error (a served pipeline's name is refused unless
# it is plain). Shown as text, it runs nothing; as HTML, it would set window.__xss.
XSS = '<img src=x onerror="window.__xss=(window.__xss||0)+1"><svg onload="window.__xss=1">'
hostile = sw.Pipeline("hostile")


@hostile.stage(f"count {XSS}")
def count(data: object):
    for _ in sw.track(range(3), desc=XSS):
        pass
    sw.report(**{XSS: 1.5, "note": XSS})
    return XSS


@hostile.stage(f"fail {XSS}")
def fail(value: str):
    print(XSS)  # the run's log
    raise ValueError(f"bad value {value}")


PIPELINES = [train, fails, hello, hostile]
