"""The process executor: stages in worker processes, tested like the thread executor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from conftest import WAIT_S, Recorder
from processes import alive, kill_leftovers, read_pids, wait_gone, write_pids

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


# -- no process outlives its stage or its run -------------------------------------------
def start_sleeper(path: str) -> subprocess.Popen[bytes]:
    """In a stage: start ``sleep 300`` and write the worker's pid and its pid to ``path``."""
    sleeper = subprocess.Popen(["sleep", "300"])
    write_pids(path, os.getpid(), sleeper.pid)
    return sleeper


def sleeper_ignoring_cancel(path):
    start_sleeper(path)
    threading.Event().wait()  # never calls a progress function


def sleeper_then_return(path):
    return start_sleeper(path).pid


def sleeper_then_die(path):
    start_sleeper(path)
    os.kill(os.getpid(), signal.SIGKILL)


def test_cancel_past_the_grace_period_ends_the_processes_the_stage_started(tmp_path) -> None:
    path = tmp_path / "pids"
    pids: list[int] = []
    try:
        run = sw.Pipeline("p", [sleeper_ignoring_cancel]).start(
            str(path), executor=ProcessExecutor(grace_s=0.2), display=False)
        pids = read_pids(path)
        run.cancel()
        assert run.wait(WAIT_S).state is RunState.CANCELLED
        wait_gone(pids)
    finally:
        kill_leftovers(pids)


def test_processes_a_stage_started_end_with_the_stage(tmp_path) -> None:
    path = tmp_path / "pids"
    pids: list[int] = []
    try:
        pipe = sw.Pipeline("p", [sleeper_then_return])
        sleeper = pipe.run(str(path), executor="process", display=False)
        pids = read_pids(path)
        assert pids[1] == sleeper
        wait_gone(pids)
    finally:
        kill_leftovers(pids)


def test_processes_a_stage_started_end_when_its_worker_dies(tmp_path) -> None:
    path = tmp_path / "pids"
    pids: list[int] = []
    try:
        run = sw.Pipeline("p", [sleeper_then_die]).start(str(path), executor="process",
                                                          display=False)
        with pytest.raises(WorkerDied, match="killed by signal 9"):
            run.result(WAIT_S)
        pids = read_pids(path)
        wait_gone(pids)
    finally:
        kill_leftovers(pids)


DRIVER = """
import itertools, os, subprocess, sys, time
import stagewidget as sw

def stage(kind):
    sleeper = subprocess.Popen(["sleep", "300"])
    print(os.getpid(), sleeper.pid, flush=True)
    if kind == "cooperative":
        for _ in sw.track(itertools.count()):
            time.sleep(0.01)
    while True:  # never calls sw.*
        time.sleep(0.01)

# capture=False: the worker's stdout is the driver's, where the test reads the pids
sw.Pipeline("p", [stage], capture=False).run(sys.argv[1], executor="process", display=False)
"""


def kill_run_process(tmp_path: Path, kind: str) -> str:
    """SIGKILL a process running a process-executor run; return its workers' stderr.

    The worker and the ``sleep`` its stage started must be gone soon after.
    """
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(DRIVER))
    proc = subprocess.Popen([sys.executable, str(driver), kind], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    pids: list[int] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line, proc.communicate(timeout=WAIT_S)[1].decode()
        pids = [int(pid) for pid in line.split()]
        assert all(alive(pid) for pid in pids)
        proc.kill()
        proc.wait(WAIT_S)
        wait_gone(pids)
        # The worker and the sleep shared the pipes: they end once both are gone.
        return proc.communicate(timeout=WAIT_S)[1].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT_S)
        kill_leftovers(pids)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_a_worker_ignoring_cancel_and_its_children_die_with_the_run_process(tmp_path
                                                                           ) -> None:
    kill_run_process(tmp_path, "ignoring")


def test_a_cooperative_worker_whose_run_process_died_exits_without_a_traceback(tmp_path
                                                                              ) -> None:
    stderr = kill_run_process(tmp_path, "cooperative")
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
