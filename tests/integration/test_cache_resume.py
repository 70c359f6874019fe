"""A notebook's cached stages survive a kernel restart (a real ipykernel 7).

Kernel one runs load (~2 s, a 50 MB array) -> scale -> report, whose report raises. In
a fresh kernel, the same cells (a new cell above them, a comment added, report fixed)
find load and scale cached and run report only; then editing scale's body runs scale
and report again, and load stays cached.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from kernel import Kernel, start_kernel

pytestmark = pytest.mark.integration

IMPORTS = "import time\nimport numpy as np\nimport stagewidget as sw\ncalls = []\n"
LOAD = '''
def load():
    calls.append("load")
    time.sleep(2)  # the long first stage's work
    return np.ones(50 * 2**20 // 8)  # 50 MB
'''
SCALE = '''
def scale(x):
    calls.append("scale")
    return x * 2
'''
REPORT_BROKEN = '''
def report(x):
    calls.append("report")
    raise ValueError("report is broken")
'''
REPORT_FIXED = '''
def report(x):
    calls.append("report")
    return float(x.sum())
'''
RUN = '''
calls.clear()
pipe = sw.Pipeline("resume", [load, scale, report], cache=True)
run = pipe.start(display=False)
status = run.wait(120)
print(repr({"states": [s["state"] for s in status.to_dict()["stages"]], "calls": calls,
            "result": run.status().outcome.result}))
'''


def run_cells(kernel: Kernel, *cells: str) -> dict[str, Any]:
    """Run the cells one by one (as a user would), the last being RUN; return its record."""
    result = None
    for cell in cells:
        result = kernel.execute(cell, timeout=120)
    assert result is not None
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


def test_cached_stages_survive_a_kernel_restart(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGEWIDGET_HOME", str(tmp_path / "home"))  # the kernels inherit it
    with start_kernel("ipykernel7", tmp_path / "first") as kernel:
        first = run_cells(kernel, IMPORTS, LOAD, SCALE, REPORT_BROKEN, RUN)
    assert first == {"states": ["succeeded", "succeeded", "failed"],
                     "calls": ["load", "scale", "report"], "result": None}

    with start_kernel("ipykernel7", tmp_path / "second") as kernel:  # the restarted kernel
        unrelated = "unrelated = sum(range(10))  # a new cell above the stages\n"
        commented = "# load the data (a comment added after the crash)\n" + LOAD
        fixed = run_cells(kernel, IMPORTS, unrelated, commented, SCALE, REPORT_FIXED, RUN)
        assert fixed == {"states": ["cached", "cached", "succeeded"], "calls": ["report"],
                         "result": 2.0 * 50 * 2**20 // 8}

        edited = run_cells(kernel, SCALE.replace("x * 2", "x * 3"), RUN)
        assert edited == {"states": ["cached", "succeeded", "succeeded"],
                          "calls": ["scale", "report"], "result": 3.0 * 50 * 2**20 // 8}
