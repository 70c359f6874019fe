"""A notebook executed headless (nbclient, as nbconvert and papermill do) and saved
shows each run's final status beside its widget, not a 0% bar or ``VBox(...)``."""

from __future__ import annotations

import json
import os
import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.integration

PIPELINE = """
import stagewidget as sw
pipe = sw.Pipeline("saved")

@pipe.stage
def square(n):
    return [x * x for x in sw.track(range(n))]

@pipe.stage
def total(xs):
    return sum(xs)
"""


def execute(*cells: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_code_cell(PIPELINE), *(new_code_cell(c) for c in cells)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return nb


def view_text(cell: nbformat.NotebookNode) -> str:
    [output] = [o for o in cell.outputs if o.output_type == "display_data"]
    assert "application/vnd.jupyter.widget-view+json" in output.data
    return output.data["text/plain"]


def test_blocking_run_saves_its_final_status() -> None:
    nb = execute("result = pipe.run(10_000)")
    text = view_text(nb.cells[1])
    assert text.startswith("saved succeeded in")
    assert "square" in text and "total" in text and "VBox" not in text


def test_background_run_that_ends_between_cells_saves_its_final_status(tmp_path) -> None:
    # The run is held until its cell has finished, then ends while the kernel is idle:
    # the view's update then carries the finished cell's parent, which nbclient ignores,
    # so it must be sent again when the next cell starts. FIFOs order the steps.
    go, ended = tmp_path / "go", tmp_path / "ended"
    os.mkfifo(go)
    os.mkfifo(ended)
    start = (f"@pipe.stage\ndef total(xs):\n    open({str(go)!r}).read()\n    return sum(xs)\n"
             f"run = pipe.start(1_000)\n"
             f"run.subscribe(lambda s: s.done() and open({str(ended)!r}, 'w').write('x'))")
    nb = new_notebook(cells=[new_code_cell(PIPELINE), new_code_cell(start),
                             new_code_cell("run.status().state.value")])
    client = NotebookClient(nb, timeout=120, kernel_name="python3")
    with client.setup_kernel():
        client.execute_cell(nb.cells[0], 0)
        client.execute_cell(nb.cells[1], 1)
        assert "pending" in view_text(nb.cells[1]) or "running" in view_text(nb.cells[1])
        go.write_text("go")  # the stage ends now, between cells
        assert ended.read_text() == "x"  # the run's final status was delivered
        client.execute_cell(nb.cells[2], 2)
    assert view_text(nb.cells[1]).startswith("saved succeeded in")
    assert nb.cells[2].outputs[0].data["text/plain"] == "'succeeded'"


def test_failed_run_saves_the_error() -> None:
    nb = execute("@pipe.stage\ndef total(xs):\n    raise ValueError('bad total')\n"
                 "run = pipe.start(10)", "run.wait().state.value")
    assert "failed" in view_text(nb.cells[1]) and "ValueError: bad total" in view_text(nb.cells[1])


def test_saved_widget_state_is_small_and_holds_the_final_view() -> None:
    nb = execute("@pipe.stage\ndef total(xs):\n    raise ValueError('bad total')\n"
                 "run = pipe.start(10)", "run.wait().state.value")
    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    [output] = [o for o in nb.cells[1].outputs if o.output_type == "display_data"]
    root = output.data["application/vnd.jupyter.widget-view+json"]["model_id"]
    view, todo = {}, [root]
    while todo:  # the view's models: its root and everything the root refers to
        model_id = todo.pop()
        if model_id in view or model_id not in state:
            continue
        view[model_id] = state[model_id]
        text = json.dumps(state[model_id]["state"])
        todo.extend(re.findall(r"IPY_MODEL_([0-9a-f]{32})", text))
    assert len(view) <= 12
    # nbclient saves every trait, defaults included (~6 KB for 11 models); JupyterLab and
    # ipywidgets.embed drop the defaults, and tests/views holds that state to 10 KB
    assert len(json.dumps(view)) <= 12_000
    html = " ".join(str(m["state"].get("value", "")) for m in view.values())
    # what a notebook opened without a kernel draws: the final rows, the error
    assert "saved failed" in html and "</em>square</b>" in html
    assert "ValueError: bad total" in html
