"""tqdm capture: the bars of the code a stage calls become that stage's progress.

Real tqdm (and real pandas, rich, ipywidgets, worker processes), no mocks. Bars that
must be seen mid-loop block on a ``Gate`` the test opens once an observer saw them.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import itertools
import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import tqdm.asyncio
import tqdm.auto
import tqdm.contrib.concurrent
import tqdm.notebook
import tqdm.std
from conftest import WAIT_S, Gate, Recorder

import stagewidget as sw
from stagewidget import PipelineError, RunState, StageState
from stagewidget.engine.process import ProcessExecutor
from stagewidget.status import Level


def start(stage, recorder: Recorder | None = None, **options):
    """Start a one-stage pipeline; a recorder (if given) observes it."""
    run = sw.Pipeline("lib", [stage], **options.pop("pipeline", {})).start(
        None, display=False, **options)
    if recorder is not None:
        run.subscribe(recorder)
    return run


def first(status: sw.RunStatus) -> sw.StageStatus:
    return status.stages[0]


# -- levels -------------------------------------------------------------------------------


def test_nested_library_bars_are_live_levels_and_the_outer_one_drives_the_stage(
        capsys) -> None:
    gate, recorder = Gate(), Recorder()

    def train(_):
        for epoch in tqdm.auto.tqdm(range(3), desc="epochs"):
            for step in tqdm.auto.tqdm(range(10), desc="steps", leave=False):
                if epoch == 1 and step == 4:
                    gate.block()
        return "trained"

    run = start(train, recorder)
    assert gate.reached.wait(WAIT_S)
    live = first(recorder.wait_for(lambda s: first(s).inner == (Level("steps", 5, 10),)))
    assert (live.desc, live.done, live.total) == ("epochs", 2, 3)
    gate.open()
    assert run.result(WAIT_S) == "trained"
    final = first(run.status())
    assert (final.desc, final.done, final.total, final.inner) == ("epochs", 3, 3, ())
    out = capsys.readouterr()
    assert out.err == "" and out.out == ""


def test_a_bar_driven_by_update_is_a_live_level(capsys) -> None:
    gate, recorder = Gate(), Recorder()

    def download(_):
        with tqdm.std.tqdm(total=100, desc="download", unit="B") as bar:
            for _ in range(10):
                bar.update(10)
                if bar.n == 30:
                    gate.block()
            return bar.n

    run = start(download, recorder)
    live = first(recorder.wait_for(lambda s: first(s).done == 30))
    assert (live.desc, live.total) == ("download", 100)
    gate.open()
    assert run.result(WAIT_S) == 100
    assert capsys.readouterr().err == ""


def test_a_closed_inner_bar_leaves_the_levels() -> None:
    gate, recorder = Gate(), Recorder()

    def phases(_):
        outer = tqdm.std.tqdm(total=2, desc="phases")
        for _ in tqdm.std.tqdm(range(5), desc="load", leave=False):
            pass
        outer.update()
        gate.block()
        outer.update()
        outer.close()

    run = start(phases, recorder)
    live = first(recorder.wait_for(lambda s: first(s).done == 1))
    assert (live.desc, live.total, live.inner) == ("phases", 2, ())
    gate.open()
    run.result(WAIT_S)


def test_stage_progress_of_its_own_keeps_library_bars_as_inner_levels() -> None:
    gate, recorder = Gate(), Recorder()

    def files(_):
        for name in sw.track(["a", "b"], desc="files"):
            for _ in tqdm.std.tqdm(range(4), desc=f"rows of {name}"):
                if name == "b":
                    gate.block()

    run = start(files, recorder)
    live = first(recorder.wait_for(lambda s: first(s).inner == (Level("rows of b", 1, 4),)))
    assert (live.desc, live.done, live.total) == ("files", 2, 2)
    gate.open()
    run.result(WAIT_S)


def test_bar_n_counts_items_handed_out_and_ends_at_the_total() -> None:
    def count(_):
        bar = tqdm.std.tqdm(range(7), initial=3)
        seen = [bar.n for _ in bar]
        return seen, bar.n

    assert start(count).result(WAIT_S) == ([4, 5, 6, 7, 8, 9, 10], 10)


# -- what the code that made a bar sees ----------------------------------------------------------


class EpochBar:
    """The pattern of Lightning's ``TQDMProgressBar``: one bar reset every epoch, moved
    only ``if not bar.disable`` (by ``n =`` plus ``refresh()``, or by ``update()``)."""

    def __init__(self, by_update: bool) -> None:
        self.by_update = by_update
        self.bar = tqdm.auto.tqdm(desc="Training", leave=True, dynamic_ncols=True,
                                  file=sys.stdout, smoothing=0)

    def on_epoch_start(self, epoch: int, batches: int) -> None:
        self.bar.reset(total=batches)
        self.bar.initial = 0
        self.bar.set_description(f"Epoch {epoch}")

    def on_batch_end(self, batch: int, loss: float) -> None:
        if not self.bar.disable:
            if self.by_update:
                self.bar.update(1)
            else:
                self.bar.n = batch + 1
                self.bar.refresh()
            self.bar.set_postfix(loss=loss)

    def on_train_end(self) -> None:
        if not self.bar.disable:
            self.bar.close()


@pytest.mark.parametrize("by_update", [False, True], ids=["n-and-refresh", "update"])
def test_a_library_that_checks_disable_before_updating_moves_the_captured_bar(
        by_update, capsys) -> None:
    gate, recorder = Gate(), Recorder()

    def fit(_):
        progress = EpochBar(by_update)
        seen = [progress.bar.disable]
        for epoch in range(3):
            progress.on_epoch_start(epoch, batches=8)
            for batch in range(8):
                progress.on_batch_end(batch, loss=1 / (batch + 1))
                if epoch == 1 and batch == 4:
                    gate.block()
        progress.on_train_end()
        return seen + [progress.bar.disable, progress.bar.n]

    run = start(fit, recorder)
    live = first(recorder.wait_for(lambda s: first(s).desc == "Epoch 1"
                                   and first(s).done == 5))
    assert live.total == 8
    gate.open()
    assert run.result(WAIT_S) == [False, True, 8]  # False while open, True once closed
    final = first(run.status())
    assert (final.desc, final.done, final.total) == ("Epoch 2", 8, 8)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_no_method_of_a_captured_bar_writes_to_its_file() -> None:
    def drive(_):
        drawn = _StringIO()
        bar = tqdm.std.tqdm(total=10, desc="quiet", file=drawn, mininterval=0,
                            miniters=1, position=2, leave=True)
        bar.update(3)
        bar.refresh()
        bar.set_description("still quiet")
        bar.set_description_str("quiet again")
        bar.set_postfix(loss=0.5)
        bar.set_postfix_str("x=1")
        bar.clear()
        bar.display()
        bar.moveto(2)
        bar.unpause()
        str(bar)
        bar.reset(total=20)
        bar.update(4)
        for _ in tqdm.std.tqdm(range(3), file=drawn, mininterval=0, leave=True):
            pass
        bar.close()
        return bar.disable, bar.n, bar.total, drawn.getvalue()

    assert start(drive).result(WAIT_S) == (True, 4, 20, "")


def test_a_captured_notebook_or_rich_bar_reads_enabled_and_builds_no_display(capsys) -> None:
    bars = [tqdm.notebook.tqdm]
    if importlib.util.find_spec("rich") is not None:
        bars.append(importlib.import_module("tqdm.rich").tqdm)

    def make(_):
        seen = []
        for cls in bars:
            bar = cls(total=4, desc=cls.__module__)
            bar.update(2)
            bar.reset(total=5)
            bar.update(5)
            seen.append((bar.disable, hasattr(bar, "container"), hasattr(bar, "_prog"), bar.n))
            bar.close()
        return seen

    assert start(make).result(WAIT_S) == [(False, False, False, 5)] * len(bars)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_a_bars_unit_is_part_of_its_level_and_the_outer_one_is_the_stages(capsys) -> None:
    gate, recorder = Gate(), Recorder()

    def train(_):
        for epoch in tqdm.std.tqdm(range(2), desc="train", unit="epoch"):
            for _ in tqdm.std.tqdm(range(4), desc="batches", unit=" batch", leave=False):
                for _ in tqdm.std.tqdm(range(3), desc="steps", leave=False):  # unit "it"
                    if epoch == 1:
                        gate.block()

    run = start(train, recorder)
    live = first(recorder.wait_for(lambda s: first(s).done == 2 and len(first(s).inner) == 2))
    assert (live.desc, live.unit) == ("train", "epoch")
    assert live.inner == (Level("batches", 1, 4, "batch"), Level("steps", 1, 3, None))
    gate.open()
    run.result(WAIT_S)
    final = first(run.status())
    assert (final.desc, final.done, final.total, final.unit) == ("train", 2, 2, "epoch")
    assert capsys.readouterr().err == ""


def test_set_postfix_numbers_become_the_stages_metrics() -> None:
    gate, recorder = Gate(), Recorder()

    def fit(_):
        bar = tqdm.std.tqdm(total=3, desc="fit", postfix={"ignored": 1.0})
        for step in range(3):
            bar.set_postfix(loss=1.0 / (step + 1), v_num="a1", ok=True, step=step)
            bar.update()
            if step == 1:
                gate.block()
        bar.set_postfix_str("lr=0.1")
        bar.close()
        return bar.postfix

    run = start(fit, recorder)
    live = first(recorder.wait_for(lambda s: first(s).done == 2))
    assert dict(live.metrics) == {"loss": 0.5, "step": 1}
    gate.open()
    assert run.result(WAIT_S) == "lr=0.1"  # tqdm's own postfix text is kept
    final = first(run.status())
    assert dict(final.metrics) == {"loss": 1 / 3, "step": 2}
    assert final.history["loss"] == (1.0, 0.5, 1 / 3)


# -- what is captured -----------------------------------------------------------------------


def test_disable_true_bars_are_left_alone() -> None:
    def quiet(_):
        bar = tqdm.std.tqdm(range(5), desc="quiet", disable=True)
        for _ in bar:
            pass
        return type(bar) is tqdm.std.tqdm

    run = start(quiet)
    assert run.result(WAIT_S) is True
    assert first(run.status()).desc is None


def test_disable_given_by_position_is_honoured() -> None:
    def positional(_):
        off = tqdm.std.tqdm(range(3), "off", 3, True, None, None, 0.1, 10.0, None, None, True)
        on = tqdm.std.tqdm(range(3), "on", 3, True, None, None, 0.1, 10.0, None, None, False)
        for _ in on:
            pass
        return type(off) is tqdm.std.tqdm, type(on) is tqdm.std.tqdm

    run = start(positional)
    assert run.result(WAIT_S) == (True, False)
    assert first(run.status()).desc == "on"


def test_disable_none_bars_are_captured_although_stderr_is_no_terminal(capsys) -> None:
    def maybe(_):
        for _ in tqdm.std.tqdm(range(5), desc="maybe", disable=None):
            pass

    run = start(maybe)
    run.result(WAIT_S)
    assert (first(run.status()).desc, first(run.status()).done) == ("maybe", 5)


def test_a_subclass_defined_by_a_library_is_captured(capsys) -> None:
    class HubBar(tqdm.auto.tqdm):
        def __init__(self, *args, name=None, **kwargs):
            self.name = name
            super().__init__(*args, **kwargs)

    def fetch(_):
        bar = HubBar(range(4), desc="fetch", name="hub")
        for _ in bar:
            pass
        return isinstance(bar, HubBar), type(bar).__name__, bar.name

    run = start(fetch)
    assert run.result(WAIT_S) == (True, "HubBar", "hub")
    assert (first(run.status()).desc, first(run.status()).done) == ("fetch", 4)
    assert capsys.readouterr().err == ""


def test_a_notebook_bar_builds_no_widget_and_displays_nothing(capsys) -> None:
    def nb(_):
        bar = tqdm.notebook.tqdm(range(6), desc="nb")
        for _ in bar:
            pass
        return hasattr(bar, "container")

    run = start(nb)
    assert run.result(WAIT_S) is False
    assert (first(run.status()).desc, first(run.status()).done) == ("nb", 6)
    out = capsys.readouterr()  # outside a kernel, display() would print the widget here
    assert out.out == "" and out.err == ""


def test_a_rich_bar_starts_no_live_display(capsys) -> None:
    pytest.importorskip("rich")
    import tqdm.rich

    def fancy(_):
        for _ in tqdm.rich.tqdm(range(6), desc="fancy"):
            pass

    run = start(fancy)
    run.result(WAIT_S)
    assert (first(run.status()).desc, first(run.status()).done) == ("fancy", 6)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_async_stage_bars_from_tqdm_asyncio_are_captured(capsys) -> None:
    async def numbers():
        for i in range(5):
            await asyncio.sleep(0)
            yield i

    async def fetch_all(_):
        got = [i async for i in tqdm.asyncio.tqdm(numbers(), desc="stream", total=5)]
        squares = await tqdm.asyncio.tqdm.gather(*(asyncio.sleep(0, i * i) for i in got),
                                                 desc="gather")
        return squares

    run = start(fetch_all)
    assert run.result(WAIT_S) == [0, 1, 4, 9, 16]
    stage = first(run.status())
    assert (stage.desc, stage.done, stage.total) == ("gather", 5, 5)
    assert capsys.readouterr().err == ""


def test_thread_map_bar_is_a_live_level(capsys) -> None:
    gate, recorder = Gate(), Recorder()

    def work(i):
        if i == 10:
            gate.block()
        return i

    def fan_out(_):
        return sum(tqdm.contrib.concurrent.thread_map(work, range(20), max_workers=2,
                                                      desc="files"))

    run = start(fan_out, recorder)
    live = first(recorder.wait_for(lambda s: first(s).desc == "files" and first(s).done > 0))
    assert live.total == 20 and live.done < 20
    gate.open()
    assert run.result(WAIT_S) == sum(range(20))
    assert capsys.readouterr().err == ""


def test_cancel_during_thread_map_never_kills_the_pools_workers(caplog) -> None:
    gate, recorder = Gate(), Recorder()

    def work(i):
        if i in (5, 6):  # both workers wait here; the later items are queued
            gate.block()
        return i

    def fan_out(_):
        return sum(tqdm.contrib.concurrent.thread_map(work, range(30), max_workers=2,
                                                      desc="files"))

    run = start(fan_out, recorder)
    recorder.wait_for(lambda s: first(s).desc == "files" and first(s).done >= 5)
    run.cancel()
    gate.open()  # the pool's done-callbacks update the bar from now on, after cancel()
    status = run.wait(WAIT_S)
    assert status.state.terminal  # the stage ran its queued items to the end, not for ever
    assert "Exception in worker" not in caplog.text


def test_pandas_progress_apply_is_a_live_level(capsys) -> None:
    pd = pytest.importorskip("pandas")
    gate, recorder = Gate(), Recorder()

    def clean(row):
        if row["x"] == 6:
            gate.block()
        return row["x"] * 2

    def preprocess(_):
        tqdm.std.tqdm.pandas(desc="rows")
        frame = pd.DataFrame({"x": range(12)})
        return frame.progress_apply(clean, axis=1).sum()

    run = start(preprocess, recorder)
    live = first(recorder.wait_for(lambda s: first(s).desc == "rows" and first(s).done >= 6))
    assert live.total == 12 and live.done < 12
    gate.open()
    assert run.result(WAIT_S) == 2 * sum(range(12))
    assert capsys.readouterr().err == ""


def test_a_bar_in_a_thread_the_stage_started_belongs_to_the_stage(capsys) -> None:
    gate, recorder = Gate(), Recorder()

    def in_thread():
        for i in tqdm.std.tqdm(range(8), desc="worker"):
            if i == 2:
                gate.block()

    def spawn(_):
        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()

    run = start(spawn, recorder)
    live = first(recorder.wait_for(lambda s: first(s).desc == "worker"))
    assert (live.done, live.total) == (3, 8)
    gate.open()
    run.result(WAIT_S)
    assert capsys.readouterr().err == ""


def test_a_bar_of_a_thread_older_than_the_stage_is_left_alone() -> None:
    gate = Gate()

    def wait(_):
        gate.block()

    run = start(wait)
    assert gate.reached.wait(WAIT_S)
    try:
        drawn = _StringIO()
        bar = tqdm.std.tqdm(range(3), desc="notebook cell", file=drawn)
        for _ in bar:
            pass
        assert type(bar) is tqdm.std.tqdm
        assert "notebook cell: 100%" in drawn.getvalue()
    finally:
        gate.open()
    run.result(WAIT_S)
    assert first(run.status()).desc is None


class _StringIO:
    """A file tqdm writes to (io.StringIO would do; kept explicit for the check)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def flush(self) -> None:
        pass

    def getvalue(self) -> str:
        return "".join(self.parts)


def test_inline_executor_captures_bars_in_the_calling_thread(capsys) -> None:
    def stage(_):
        for _ in tqdm.auto.tqdm(range(4), desc="inline"):
            pass
        return "ok"

    run = sw.Pipeline("lib", [stage]).start(None, executor="inline", display=False)
    assert run.result(WAIT_S) == "ok"
    assert (first(run.status()).desc, first(run.status()).done) == ("inline", 4)
    assert capsys.readouterr().err == ""


# -- capture=False ---------------------------------------------------------------------------


def drawing(_):
    bar = tqdm.std.tqdm(range(3), desc="drawn")
    for _ in bar:
        pass
    return type(bar) is tqdm.std.tqdm


@pytest.mark.parametrize("build", [
    lambda: sw.Pipeline("lib", [drawing], capture=False),
    lambda: sw.Pipeline("lib", [sw.Stage(drawing, capture=False)]),
    lambda: _decorated(),
], ids=["pipeline", "stage", "decorator"])
def test_capture_false_leaves_library_bars_alone(build, capsys) -> None:
    run = build().start(None, display=False)
    assert run.result(WAIT_S) is True
    assert first(run.status()).desc is None
    assert "drawn: 100%" in capsys.readouterr().err


def _decorated() -> sw.Pipeline:
    pipe = sw.Pipeline("lib")
    pipe.stage(capture=False)(drawing)
    return pipe


def test_a_stage_capture_true_wins_over_the_pipeline_capture_false(capsys) -> None:
    run = sw.Pipeline("lib", [sw.Stage(drawing, capture=True)], capture=False).start(
        None, display=False)
    assert run.result(WAIT_S) is False
    assert first(run.status()).desc == "drawn"
    assert capsys.readouterr().err == ""


def test_capture_must_be_a_bool() -> None:
    with pytest.raises(PipelineError, match="stage 'drawing' capture must be True, False or None"):
        sw.Stage(drawing, capture="yes")
    with pytest.raises(PipelineError, match="pipeline 'p' capture must be True or False"):
        sw.Pipeline("p", capture=None)


# -- cancel ------------------------------------------------------------------------------------


def endless_library_loop(_):
    for _ in tqdm.auto.tqdm(itertools.count(), desc="endless"):
        time.sleep(0.002)


def long_library_loop(_):
    for _ in tqdm.auto.tqdm(range(10**7), desc="long"):
        time.sleep(0.002)


def updating_library_loop(_):
    with tqdm.auto.tqdm(desc="manual") as bar:
        while True:
            time.sleep(0.002)
            bar.update()


@pytest.mark.parametrize("stage", [endless_library_loop, long_library_loop,
                                   updating_library_loop])
def test_cancel_stops_a_library_loop_that_never_calls_stagewidget(stage) -> None:
    recorder = Recorder()
    run = start(stage, recorder)
    recorder.wait_for(lambda s: first(s).done > 0)
    assert run.cancel()
    status = run.wait(WAIT_S)
    assert status.state is RunState.CANCELLED
    assert isinstance(run.exception(), sw.Cancelled)
    assert first(status).state is StageState.CANCELLED


# -- process executor ---------------------------------------------------------------------------


def nested_in_worker(_):
    for _ in tqdm.auto.tqdm(range(3), desc="epochs", unit="epoch"):
        for _ in tqdm.auto.tqdm(range(400), desc="steps", leave=False, unit="step"):
            time.sleep(0.001)
    return "done"


def test_process_executor_sends_library_levels_back_and_draws_nothing(capfd) -> None:
    recorder = Recorder()
    run = start(nested_in_worker, recorder, executor="process")
    live = first(recorder.wait_for(
        lambda s: first(s).desc == "epochs" and len(first(s).inner) == 1
        and 0 < first(s).inner[0].done < 400))
    assert live.total == 3 and live.inner[0].desc == "steps" and live.inner[0].total == 400
    assert (live.unit, live.inner[0].unit) == ("epoch", "step")
    assert run.result(WAIT_S) == "done"
    assert (first(run.status()).done, first(run.status()).total) == (3, 3)
    out = capfd.readouterr()  # the worker writes to the inherited file descriptors
    assert out.err == "" and out.out == ""


def test_process_executor_cancel_stops_a_library_loop_cooperatively() -> None:
    recorder = Recorder()
    run = start(endless_library_loop, recorder, executor=ProcessExecutor(grace_s=600))
    recorder.wait_for(lambda s: first(s).done > 0)
    run.cancel()
    status = run.wait(WAIT_S)
    assert status.state is RunState.CANCELLED  # long before the worker would be killed
    assert "did not stop" not in str(run.exception())


def drawing_in_worker(_):
    for _ in tqdm.std.tqdm(range(3), desc="worker bar"):
        pass


def test_process_executor_capture_false_leaves_worker_bars_alone(capfd) -> None:
    run = sw.Pipeline("lib", [drawing_in_worker], capture=False).start(
        None, display=False, executor="process")
    run.result(WAIT_S)
    assert "worker bar: 100%" in capfd.readouterr().err


# -- fresh interpreters: import order, nothing at import, tqdm as before afterwards ------------

LIBRARY = '''
"""A library that imported its progress bar before stagewidget was imported."""
from tqdm.auto import tqdm


def train(epochs, steps, on_step):
    for epoch in tqdm(range(epochs), desc="epochs"):
        for step in tqdm(range(steps), desc="steps", leave=False):
            on_step(epoch, step)
    return "trained"
'''

SCRIPT = '''
import json, sys, threading
import trainlib  # imports tqdm.auto first
import tqdm.std

init_before = tqdm.std.tqdm.__dict__["__init__"]
import stagewidget as sw
result = {"untouched_by_import": tqdm.std.tqdm.__dict__["__init__"] is init_before}

reached, release = threading.Event(), threading.Event()
cond, snapshots = threading.Condition(), []


def observe(status):
    with cond:
        snapshots.append(status.stages[0])
        cond.notify_all()


def on_step(epoch, step):
    if (epoch, step) == (1, 6):
        reached.set()
        release.wait(20)


def stage(_):
    return trainlib.train(3, 10, on_step)


pipe = sw.Pipeline("fresh", [stage])
result["untouched_by_pipeline"] = tqdm.std.tqdm.__dict__["__init__"] is init_before
run = pipe.start(None, display=False)
run.subscribe(observe)
reached.wait(20)
with cond:
    cond.wait_for(lambda: any(s.inner for s in snapshots), 20)
live = next(s for s in snapshots if s.inner)
result["live"] = [live.desc, live.done, live.total, [list(lv.to_dict().values())[:3]
                                                    for lv in live.inner]]
release.set()
result["result"] = run.result(20)
result["hooked_in_stage"] = tqdm.std.tqdm.__dict__["__init__"] is not init_before
sys.stderr.write("=== run over ===\\n")
bar = trainlib.tqdm(range(3), desc="after")
for _ in bar:
    pass
result["plain_class_after"] = type(bar) is trainlib.tqdm
print(json.dumps(result))
'''


def run_fresh(tmp_path: Path, script: str) -> tuple[dict, str]:
    (tmp_path / "trainlib.py").write_text(textwrap.dedent(LIBRARY))
    (tmp_path / "main.py").write_text(textwrap.dedent(script))
    done = subprocess.run([sys.executable, "main.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


def test_tqdm_disable_in_the_environment_keeps_bars_disabled(tmp_path) -> None:
    script = """
    import json, os
    os.environ["TQDM_DISABLE"] = "1"  # read by tqdm at import, as its envwrap does
    import tqdm.std
    import stagewidget as sw

    def stage(_):
        bar = tqdm.std.tqdm(range(3), desc="env")
        list(bar)
        return type(bar) is tqdm.std.tqdm

    run = sw.Pipeline("env", [stage]).start(None, display=False)
    print(json.dumps([run.result(20), run.status().stages[0].desc]))
    """
    result, stderr = run_fresh(tmp_path, script)
    assert result == [True, None] and stderr == ""


def test_a_library_importing_tqdm_auto_first_is_captured_in_a_fresh_interpreter(
        tmp_path) -> None:
    result, stderr = run_fresh(tmp_path, SCRIPT)
    assert result["untouched_by_import"] and result["untouched_by_pipeline"]
    assert result["hooked_in_stage"]
    assert result["live"] == ["epochs", 2, 3, [["steps", 7, 10]]]
    assert result["result"] == "trained"
    during, after = stderr.split("=== run over ===\n")
    assert during == ""  # nothing of the captured bars while captured
    assert "after: 100%" in after  # and tqdm draws as before once the run is over
    assert result["plain_class_after"]


# -- Dask ----------------------------------------------------------------------------------------


@pytest.mark.integration
def test_dask_worker_sends_library_levels_back_and_draws_nothing(capfd) -> None:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
        host="127.0.0.1", scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    try:
        with distributed.Client(cluster) as client:
            recorder = Recorder()
            run = start(nested_in_worker, recorder, executor=client)
            live = first(recorder.wait_for(
                lambda s: first(s).desc == "epochs" and len(first(s).inner) == 1
                and 0 < first(s).inner[0].done < 400))
            assert live.total == 3 and live.inner[0].desc == "steps"
            assert (live.unit, live.inner[0].unit) == ("epoch", "step")
            assert run.result(WAIT_S) == "done"
    finally:
        cluster.close()
    assert "epochs" not in capfd.readouterr().err  # the worker logs there; no bar did


def test_a_stage_starting_beside_another_keeps_no_copy_of_every_thread() -> None:
    """Only a stage that starts alone can own context-less threads by elimination, so
    only it notes the threads alive at its start (1,000 runs at once: no 2,000-thread
    copy per stage)."""
    from stagewidget.engine import libprogress
    from stagewidget.engine.progress import StageProgress

    first = libprogress.begin(StageProgress("first"), enabled=True)
    try:
        second = libprogress.begin(StageProgress("second"), enabled=True)
        libprogress.end(second)
        assert first.threads is not None and threading.current_thread() in first.threads
        assert second.threads is None
    finally:
        libprogress.end(first)
