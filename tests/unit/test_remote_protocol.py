"""One stage call and one progress report, shared by the process and Dask executors."""

from __future__ import annotations

import asyncio
import json
import pickle

import cloudpickle

from stagewidget.engine.call import NO_INPUT, call_stage
from stagewidget.engine.logs import RunLog
from stagewidget.engine.progress import StageProgress
from stagewidget.engine.report import ProgressReport
from stagewidget.status import Level


def test_no_input_is_the_same_object_after_pickling() -> None:
    assert pickle.loads(pickle.dumps(NO_INPUT)) is NO_INPUT
    assert cloudpickle.loads(cloudpickle.dumps(NO_INPUT)) is NO_INPUT


def test_call_stage_passes_the_input_or_nothing() -> None:
    assert call_stage(lambda: "none", NO_INPUT) == "none"
    assert call_stage(lambda x: x * 2, 21) == 42
    assert call_stage(lambda x: x, None) is None  # None is an input like any other


def test_call_stage_runs_async_stages_with_the_given_runner() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    ran = []

    def runner(coro):
        ran.append(coro)
        return asyncio.run(coro)

    assert call_stage(double, 4) == 8  # asyncio.run by default
    assert call_stage(double, 5, runner) == 10 and len(ran) == 1


def sampled_progress() -> StageProgress:
    progress = StageProgress("fit", 10)
    progress.advance(3)
    progress.report("epoch 1", loss=0.5, tag="a")
    progress.report(loss=0.25)
    return progress


def test_a_report_samples_the_progress_and_survives_the_wire() -> None:
    report = ProgressReport.of(sampled_progress(), ("line 1",), ("open",))
    assert (report.done, report.total, report.message) == (3, 10, "epoch 1")
    assert report.metrics == {"loss": 0.25, "tag": "a"}
    assert report.history == {"loss": (0.5, 0.25)}
    wire = report.to_wire()
    assert ProgressReport.from_wire(wire) == report
    # plain data (as msgpack carries it: every sequence an array) comes back the same
    assert ProgressReport.from_wire(json.loads(json.dumps(wire))) == report
    assert ProgressReport.from_wire(pickle.loads(pickle.dumps(wire))) == report


def test_a_report_with_inner_levels_and_no_log_survives_the_wire() -> None:
    report = ProgressReport(5, None, "batches", "it", (Level("inner", 2, 4, "B"),))
    assert report.open_lines is None
    assert ProgressReport.from_wire(report.to_wire()) == report


def test_applying_a_report_mirrors_it_into_the_runs_progress_and_log() -> None:
    log = RunLog()
    mirror = StageProgress("fit", None, log_sink=log)
    report = ProgressReport(7, 9, "rows", "row", (Level("inner", 1, 2),), {"acc": 0.9},
                            {"acc": (0.8, 0.9)}, "nearly", ("done 7",), ())
    report.apply_to(mirror)
    assert mirror.sample() == (7, 9, "rows", "row", (Level("inner", 1, 2),))
    assert dict(mirror.metrics()) == {"acc": 0.9}
    assert dict(mirror.history()) == {"acc": (0.8, 0.9)}
    assert mirror.message == "nearly"
    assert log.since(0)[0] == ["done 7"]


def test_a_report_without_the_log_leaves_the_log_alone() -> None:
    log = RunLog()
    log.extend(["kept"])
    mirror = StageProgress("fit", None, log_sink=log)
    ProgressReport(1, 2, None, None).apply_to(mirror)
    assert log.since(0)[0] == ["kept"] and mirror.sample()[:2] == (1, 2)
