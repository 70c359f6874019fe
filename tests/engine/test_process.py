"""The process executor: stages in worker processes, tested like the thread executor."""

from __future__ import annotations

import os
import threading

import pytest
from conftest import WAIT_S, Recorder

import stagewidget as sw
from stagewidget import RunState, StageState
from stagewidget.engine.process import ProcessExecutor, WorkerDied


def burn(n):
    total = 0
    for i in sw.track(range(n), desc="burn"):
        total += i * i % 7
    sw.report(total=total)
    return total


def whoami(_):
    return os.getpid()


def test_stage_runs_in_another_process_and_returns_its_output() -> None:
    pipe = sw.Pipeline("p", [sw.Stage(whoami, executor="process"), sw.Stage(lambda pid: pid, name="same")])
    child = pipe.run(None, display=False)
    assert child != os.getpid()


def test_progress_and_metrics_from_the_worker_reach_the_run_live(recorder: Recorder) -> None:
    run = sw.Pipeline("p", [burn]).start(30_000_000, executor="process", display=recorder)
    live = recorder.wait_for(lambda s: s.stages[0].state is StageState.RUNNING
                             and 0 < s.stages[0].done < 30_000_000)
    assert live.stages[0].total == 30_000_000 and live.stages[0].desc == "burn"
    run.cancel()
    run.wait(WAIT_S)
    small = sw.Pipeline("p", [burn]).start(1000, executor="process", display=False)
    status = small.wait(WAIT_S)
    assert status.stages[0].done == 1000
    assert status.stages[0].metrics["total"] == small.result()


def test_cancel_is_cooperative_in_the_worker() -> None:
    recorder = Recorder()
    run = sw.Pipeline("p", [burn, lambda x: x]).start(10**10, executor="process",
                                                      display=recorder)
    recorder.wait_for(lambda s: s.stages[0].done > 0)
    assert run.cancel()
    status = run.wait(WAIT_S)
    assert status.state is RunState.CANCELLED
    assert [s.state for s in status.stages] == [StageState.CANCELLED, StageState.SKIPPED]
    assert 0 < status.stages[0].done < 10**10  # how far it got, not the total


def ignores_cancel(_):
    threading.Event().wait()  # never calls a progress function


def test_a_stage_that_ignores_cancel_is_terminated_after_the_grace_period() -> None:
    started = Recorder()
    run = sw.Pipeline("p", [ignores_cancel]).start(
        None, executor=ProcessExecutor(grace_s=0.2), display=started)
    started.wait_for(lambda s: s.stages[0].state is StageState.RUNNING)
    run.cancel()
    status = run.wait(WAIT_S)
    assert status.state is RunState.CANCELLED


def fails(_):
    raise KeyError("column 'age' is missing")


def test_failure_keeps_the_exception_type_and_the_remote_traceback() -> None:
    run = sw.Pipeline("p", [sw.Stage(fails, executor="process")]).start(1, display=False)
    with pytest.raises(KeyError, match="age") as caught:
        run.result(WAIT_S)
    notes = "".join(getattr(caught.value, "__notes__", []))
    assert "in worker process" in notes and "fails" in notes
    assert run.status().stages[0].state is StageState.FAILED
    assert run.status().error.stage == "fails"


def test_functions_defined_in_a_notebook_cell_run_in_the_worker() -> None:
    namespace = {"__name__": "__main__", "sw": sw}  # what a notebook cell's functions see
    exec("def cell_stage(x):\n    return [v * 10 for v in sw.track(x)]\n", namespace)
    stage = sw.Stage(namespace["cell_stage"], executor="process")
    assert sw.Pipeline("p", [stage]).run([1, 2, 3], display=False) == [10, 20, 30]


def dies(_):
    os.kill(os.getpid(), 9)


def test_a_killed_worker_fails_the_stage_with_a_clear_message() -> None:
    run = sw.Pipeline("p", [sw.Stage(dies, executor="process")]).start(1, display=False)
    with pytest.raises(WorkerDied, match="stage 'dies' was killed by signal 9"):
        run.result(WAIT_S)
    assert run.status().state is RunState.FAILED


def test_async_stage_runs_in_the_worker() -> None:
    namespace = {"__name__": "__main__"}
    exec("import asyncio\nasync def fetch(n):\n    await asyncio.sleep(0)\n    return n + 1\n",
         namespace)
    assert sw.Pipeline("p", [namespace["fetch"]]).run(1, executor="process", display=False) == 2


def test_retry_resumes_in_a_worker_after_a_failure() -> None:
    flag = {"fail": True}

    def maybe(x):
        if flag["fail"]:
            raise ValueError("flaky")
        return x * 2

    pipe = sw.Pipeline("p", [sw.Stage(lambda x: x + 1, name="inc"), maybe])
    run = pipe.start(1, executor="process", display=False)
    assert isinstance(run.exception(WAIT_S), ValueError)
    flag["fail"] = False  # the closure is pickled again for the retry
    assert run.retry(display=False).result(WAIT_S) == 4
