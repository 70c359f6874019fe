"""Widget models and saved widget state of one 5-stage notebook view (no kernel needed).

Five stages with progress, two metrics charted per stage, 250 log lines, and a failure
in the last stage (so the traceback and Retry are in the saved state). Models are
counted around building the view; the state is what ``ipywidgets.embed`` saves (as
JupyterLab does, defaults dropped). Targets: <= 12 models and <= 10 KB per view.
Run: ``.venv/bin/python -m bench.view_state``
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from typing import Any

import stagewidget as sw

from .common import write_json


def five_stage_pipeline() -> sw.Pipeline:
    """Five stages with progress, logs and metrics; the last one fails."""
    def make(i: int) -> sw.Stage:
        def stage(x: Any) -> Any:
            for k in sw.track(range(50), desc="batches"):
                sw.report(loss=1.0 / (k + 1), acc=k / 50)
                logging.getLogger("user").warning("stage %d, batch %d: a log line", i, k)
            if i == 4:
                raise ValueError("bad batch")
            return x
        return sw.Stage(stage, name=f"stage-{i}")

    return sw.Pipeline("five", [make(i) for i in range(5)])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    import ipywidgets as w
    from ipywidgets.embed import dependency_state

    from stagewidget.engine.logs import capture_logs
    from stagewidget.views.widget import RunView

    handler = capture_logs()
    try:
        pipe = five_stage_pipeline()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Widget.widgets
            before = set(w.Widget.widgets)
            run = sw.Run(pipe, pipe.stages, 1, executor=sw.ThreadExecutor(),
                         refresh_hz=10, clock=time.time)
            view = RunView(run)
            run.launch()
            run.wait(60)
            view.refresh()
            models = len(set(w.Widget.widgets) - before)
    finally:
        logging.getLogger().removeHandler(handler)
    saved = len(json.dumps(dependency_state(view.widget), separators=(",", ":")))
    results = {"models": models, "saved_state_bytes": saved}
    print(f"one 5-stage view: {models} widget models, {saved / 1000:.1f} KB saved state "
          "(targets: <= 12 models, <= 10 KB)")
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
