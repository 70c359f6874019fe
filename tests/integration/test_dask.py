"""The Dask executor on a real LocalCluster (processes, 2 workers, 127.0.0.1, no dashboard)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import WAIT_S, Recorder

import stagewidget as sw
from stagewidget import RunState, StageState
from stagewidget.engine.cluster import DaskExecutor
from stagewidget.engine.process import WorkerDied

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.integration


def local_cluster(**config):
    import dask

    with dask.config.set(config):
        # The scheduler's HTTP server (health, metrics) would take port 8787 even with
        # the dashboard off; a free port on 127.0.0.1 lets clusters sit side by side.
        return distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
            host="127.0.0.1", scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})


@pytest.fixture(scope="module")
def client():
    cluster = local_cluster()
    with distributed.Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


def burn(n):
    total = 0
    for i in sw.track(range(n), desc="burn"):
        total += i % 7
        if i % 200_000 == 0:
            sw.report(i=i, where=os.getpid())
    return total


def test_progress_from_a_worker_reaches_the_run_live(client) -> None:
    recorder = Recorder()
    run = sw.Pipeline("p", [burn]).start(10**10, executor=client, display=recorder)
    live = recorder.wait_for(lambda s: 0 < s.stages[0].done < 10**10)
    assert live.stages[0].desc == "burn" and live.stages[0].total == 10**10
    metrics = recorder.wait_for(lambda s: "where" in s.stages[0].metrics).stages[0].metrics
    assert metrics["where"] != os.getpid()  # reported by the worker process
    run.cancel()
    status = run.wait(WAIT_S)
    assert status.state is RunState.CANCELLED
    assert 0 < status.stages[0].done < 10**10


def test_a_finished_stage_shows_its_final_count_and_result(client) -> None:
    run = sw.Pipeline("p", [burn, sw.Stage(lambda t: t + 1, name="plus")]).start(
        100_000, executor=client, display=False)
    assert run.result(WAIT_S) == sum(i % 7 for i in range(100_000)) + 1
    assert run.status().stages[0].done == 100_000


def square(x):
    return x * x


def fan_out(n):
    return sum(sw.map(square, range(n), desc="files"))


def test_map_fans_out_over_the_cluster_with_one_unit_per_item(client) -> None:
    recorder = Recorder()
    run = sw.Pipeline("p", [fan_out]).start(1000, executor=client, display=recorder)
    assert run.result(WAIT_S) == sum(x * x for x in range(1000))
    final = run.status().stages[0]
    assert (final.done, final.total, final.desc) == (1000, 1000, "files")
    seen = {s.stages[0].done for s in recorder.snapshots}
    assert any(0 < done < 1000 for done in seen) or len(seen) > 2, seen


def held(i):
    if i >= 2:  # the rest wait until the test lets them go (or 60 s)
        distributed.Event("stagewidget-test-release").wait(timeout=60)
    return i


def fan_out_held(n):
    return sum(sw.map(held, range(n)))


def test_cancel_during_map_cancels_the_item_tasks(client) -> None:
    recorder = Recorder()
    # A long grace: the run may only end through the cooperative path under test.
    executor = DaskExecutor(client, grace_s=WAIT_S)
    try:
        run = sw.Pipeline("p", [fan_out_held]).start(20, executor=executor, display=recorder)
        recorder.wait_for(lambda s: s.stages[0].done == 2)
        run.cancel()
        assert run.wait(WAIT_S).state is RunState.CANCELLED
        left = client.run_on_scheduler(lambda dask_scheduler: [
            str(key) for key in dask_scheduler.tasks if str(key).startswith("held-")])
        assert left == []
    finally:
        distributed.Event("stagewidget-test-release", client=client).set()


def test_the_same_pipeline_runs_on_threads_a_process_and_the_cluster(client) -> None:
    pipe = sw.Pipeline("p", [fan_out, sw.Stage(lambda t: t % 1000, name="mod")])
    results = {name: pipe.run(300, executor=executor, display=False)
               for name, executor in (("thread", "thread"), ("process", "process"),
                                      ("dask", client))}
    assert len(set(results.values())) == 1, results


def fails(_):
    raise KeyError("column 'age' is missing")


def test_a_remote_failure_keeps_its_type_and_remote_traceback(client) -> None:
    run = sw.Pipeline("p", [fails, burn]).start(1, executor=client, display=False)
    with pytest.raises(KeyError, match="age"):
        run.result(WAIT_S)
    status = run.status()
    assert [s.state for s in status.stages] == [StageState.FAILED, StageState.SKIPPED]
    assert status.error.type == "KeyError"
    assert "in fails" in status.error.traceback
    assert "on Dask worker tcp://127.0.0.1:" in status.error.traceback


async def fetch(n):
    import asyncio

    for _ in sw.track(range(n)):
        await asyncio.sleep(0)
    return n


def test_async_stages_run_on_workers(client) -> None:
    assert sw.Pipeline("p", [fetch]).run(50, executor=client, display=False) == 50


def dies_once(marker):
    if not os.path.exists(marker):
        Path(marker).write_text("died")
        os._exit(1)  # the worker process dies mid-task
    return "second attempt"


def test_a_task_whose_worker_died_is_retried_by_dask(client, tmp_path) -> None:
    run = sw.Pipeline("p", [dies_once]).start(str(tmp_path / "m"), executor=client,
                                              display=False)
    assert run.result(60) == "second attempt"


def test_with_no_retries_a_killed_worker_fails_the_stage_clearly(tmp_path) -> None:
    cluster = local_cluster(**{"distributed.scheduler.allowed-failures": 0})
    try:
        with distributed.Client(cluster) as strict:
            run = sw.Pipeline("p", [dies_once]).start(str(tmp_path / "m"), executor=strict,
                                                      display=False)
            status = run.wait(60)
    finally:
        cluster.close()
    assert status.state is RunState.FAILED
    assert status.error.type == "stagewidget.WorkerDied"  # the public name
    assert "Dask workers running it died" in status.error.message
    assert isinstance(status.error.exception, WorkerDied)


def make(n):
    return list(range(n))


def test_outputs_can_stay_on_the_cluster_between_stages(client) -> None:
    keep = DaskExecutor(client, keep_on_cluster=True)
    pipe = sw.Pipeline("p", [make, sw.Stage(lambda xs: type(xs).__name__, name="what",
                                             executor="thread")])
    assert pipe.run(5, executor=keep, display=False) == "Future"
    on_cluster = sw.Pipeline("p", [make, sw.Stage(sum, name="total")])
    assert on_cluster.run(100, executor=keep, display=False) == 4950  # the last is pulled


def test_importing_stagewidget_does_not_import_dask() -> None:
    code = ("import sys, stagewidget as sw; sw.Pipeline('p', [abs]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=WAIT_S)
    assert out.stdout.strip() == "[]"


def chatty(_):
    """Print a line and a redrawn one, then wait for cancel (it never calls sw.track)."""
    import sys
    import time

    print("epoch 1 on the worker")
    for step in range(1, 4):
        sys.stdout.write(f"\rstep {step}/3")
    while not sw.cancelled():
        time.sleep(0.01)
    raise sw.Cancelled("stopped as asked")


def test_a_tasks_prints_come_back_with_its_progress_once_each(client) -> None:
    recorder = Recorder()
    run = sw.Pipeline("p", [chatty]).start(None, executor=client, display=recorder)
    live = recorder.wait_for(lambda s: "step 3/3" in s.logs)
    assert live.logs == ("epoch 1 on the worker", "step 3/3") and live.logs_open == 1
    run.cancel()
    status = run.wait(WAIT_S)
    assert status.state is RunState.CANCELLED
    assert status.logs == ("epoch 1 on the worker", "step 3/3")  # sent once, finished once
    assert (status.logs_total, status.logs_open) == (2, 0)
