"""The pipeline the service benchmark serves (``python -m stagewidget serve``)."""

from __future__ import annotations

import time

import stagewidget as sw

work = sw.Pipeline("work")


@work.stage
def steps(data):
    """``steps`` steps of ``step_s`` seconds: like the Flask origin's task."""
    count, step_s = int(data.get("steps", 0)), float(data.get("step_s", 0.0))
    for _ in sw.track(range(count), desc="steps"):
        time.sleep(step_s)
    return count


PIPELINES = [work]
