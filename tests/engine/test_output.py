"""Output capture: a stage's prints, stderr writes and warnings go to its run's log.

What must stay off the terminal is checked on real file descriptors, in fresh
interpreters (``DRIVER``) whose stdout and stderr are pipes read here; the rest runs in
this process with real threads, worker processes and streams. Stages that must be seen
mid-way block on events the test sets once an observer saw them.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest
from conftest import WAIT_S, Recorder

import stagewidget as sw
from stagewidget.engine import output
from stagewidget.views.text import TextView


@pytest.fixture(autouse=True)
def restore_streams():
    """Leave sys.stdout, sys.stderr and warnings.showwarning as the test found them."""
    saved = sys.stdout, sys.stderr, warnings.showwarning
    yield
    sys.stdout, sys.stderr, warnings.showwarning = saved


def one_stage(fn, **options):
    return sw.Pipeline("out", [fn], **options.pop("pipeline", {})).start(
        None, display=options.pop("display", False), **options)


# -- fresh interpreters: what reaches the real file descriptors ---------------------------

DRIVER = """
import json, sys, threading, warnings
import stagewidget as sw

mode = sys.argv[1]
in_stage, printed = threading.Event(), threading.Event()
outside = threading.Thread(target=lambda: (in_stage.wait(30), print("outside thread"),
                                           printed.set()))
if mode == "others":
    outside.start()  # exists before the stage: never the stage's

def body():
    print("to stdout")
    print("to stderr", file=sys.stderr)
    sys.stdout.write("no newline")
    warnings.warn("careful now")
    started = threading.Thread(target=print, args=("from a thread of the stage",))
    started.start()
    started.join()
    return "done"

def stage(_):
    done = body()
    if mode == "others":
        in_stage.set()
        printed.wait(30)
    return done

def in_worker(_):  # pickled for the worker: no events in it
    import os, subprocess
    os.write(1, b"fd 1 of the worker\\n")
    subprocess.run([sys.executable, "-c", "print('child of the worker')"], check=True)
    return body()

options = {"capture": False} if mode == "off" else {}
executor = "process" if mode == "process" else None
if mode == "process":
    stage = in_worker
run = sw.Pipeline("p", [stage], **options).start(None, display=False, executor=executor)
if mode == "others":
    in_stage.wait(30)
    print("main thread during the stage")
    warnings.warn("main thread warning")
result = run.result(30)
if mode == "others":
    outside.join(30)
print("after the run")
print("after the run", file=sys.stderr)
print(json.dumps({"result": result, "logs": list(run.status().logs)}))
"""


def drive(tmp_path, mode: str) -> tuple[list[str], list[str], dict]:
    """Run ``DRIVER`` in ``mode``; return its stdout lines (but the last), stderr lines
    and the last stdout line's JSON (the run's result and logs)."""
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    done = subprocess.run([sys.executable, str(script), mode], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    *stdout, last = done.stdout.splitlines()
    return stdout, done.stderr.splitlines(), json.loads(last)


STAGE_LINES = ["to stdout", "to stderr", "from a thread of the stage"]


def test_a_stages_prints_and_warnings_go_to_its_log_and_not_to_the_terminal(tmp_path) -> None:
    stdout, stderr, report = drive(tmp_path, "plain")
    assert report["result"] == "done"
    logs = report["logs"]
    assert logs[:2] == STAGE_LINES[:2]
    assert any(line.endswith("UserWarning: careful now") for line in logs)
    assert "from a thread of the stage" in logs
    assert logs[-1] == "no newline"  # finished when the stage ended, kept once
    assert stdout == ["after the run"]  # print works as before once the run is over
    assert stderr == ["after the run"]


def test_other_threads_and_the_main_thread_write_to_the_terminal_during_a_stage(
        tmp_path) -> None:
    stdout, stderr, report = drive(tmp_path, "others")
    text = "\n".join(stdout)  # two threads print at once: their lines may interleave
    assert "outside thread" in text and "main thread during the stage" in text
    assert any("UserWarning: main thread warning" in line for line in stderr)
    logs = report["logs"]
    assert not any("outside" in line or "main thread" in line for line in logs)
    assert all(line in logs for line in STAGE_LINES)


def test_a_stage_with_capture_off_leaves_its_output_alone(tmp_path) -> None:
    stdout, stderr, report = drive(tmp_path, "off")
    assert report["logs"] == []
    assert stdout == ["to stdout", "no newlinefrom a thread of the stage", "after the run"]
    assert "to stderr" in stderr and any("careful now" in line for line in stderr)


def test_process_worker_output_comes_back_in_the_log_and_not_on_the_parents_stdout(
        tmp_path) -> None:
    stdout, stderr, report = drive(tmp_path, "process")
    assert report["result"] == "done"
    logs = report["logs"]
    assert logs[:2] == ["fd 1 of the worker", "child of the worker"]
    assert all(line in logs for line in STAGE_LINES[:2])
    assert any(line.endswith("UserWarning: careful now") for line in logs)
    assert "no newlinefrom a thread of the stage" in logs  # one process: one stdout pipe
    assert stdout == ["after the run"]
    assert stderr == ["after the run"]


# -- in this process ---------------------------------------------------------------------

def test_a_carriage_return_progress_line_keeps_only_its_latest_state() -> None:
    redrawn, go_on = threading.Event(), threading.Event()
    recorder = Recorder()

    def fit(_):
        print("Epoch 1/1")
        shown = ""
        for step in range(1, 11):  # as Keras' Progbar redraws on a terminal
            sys.stdout.write("\b" * len(shown) + "\r")
            shown = f"{step}/10 [{'=' * step}{'.' * (10 - step)}] - loss: {1 / step:.3f}"
            sys.stdout.write(shown)
            sys.stdout.flush()
            if step == 4:
                redrawn.set()
                assert go_on.wait(WAIT_S)
        sys.stdout.write("\n")
        print("tick 1\rtick 2\rtick 3")
        return "fit"

    run = one_stage(fit, display=recorder)
    assert redrawn.wait(WAIT_S)
    live = recorder.wait_for(lambda s: s.logs_open == 1)
    assert live.logs == ("Epoch 1/1", "4/10 [====......] - loss: 0.250")
    go_on.set()
    assert run.result(WAIT_S) == "fit"
    status = run.status()
    assert status.logs == ("Epoch 1/1", "10/10 [==========] - loss: 0.100", "tick 3")
    assert (status.logs_total, status.logs_open) == (3, 0)


def test_threads_the_stage_starts_print_into_its_log_and_outside_stays_put() -> None:
    outside = io.StringIO()
    sys.stdout = outside

    def stage(_):
        threads = [threading.Thread(target=print, args=(f"worker {i}",)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    run = one_stage(stage)
    run.result(WAIT_S)
    print("after the run")
    assert sorted(run.status().logs) == ["worker 0", "worker 1", "worker 2"]
    assert outside.getvalue() == "after the run\n"


def test_redirect_stdout_in_a_stage_goes_where_the_user_sent_it() -> None:
    redirected = io.StringIO()

    def stage(_):
        with contextlib.redirect_stdout(redirected):
            print("kept by the user")
        print("captured")

    run = one_stage(stage)
    run.result(WAIT_S)
    assert redirected.getvalue() == "kept by the user\n"
    assert run.status().logs == ("captured",)


def test_a_stream_swapped_in_after_the_first_stage_is_wrapped_at_the_next() -> None:
    one_stage(lambda _: print("first")).result(WAIT_S)
    swapped = io.StringIO()
    sys.stdout = swapped  # as a user (or a kernel) may, for good
    run = one_stage(lambda _: print("second"))
    run.result(WAIT_S)
    print("outside")
    assert run.status().logs == ("second",)
    assert swapped.getvalue() == "outside\n"


def test_the_proxy_is_the_replaced_stream_to_code_that_asks(tmp_path) -> None:
    with open(tmp_path / "out.txt", "w", encoding="latin-1") as real:
        sys.stdout = real
        output.install()
        proxy = sys.stdout
        assert proxy is not real and output.original(proxy) is real
        assert (proxy.encoding, proxy.isatty(), proxy.fileno(), proxy.buffer, proxy.name) \
            == ("latin-1", False, real.fileno(), real.buffer, real.name)
        proxy.writelines(["a", "b\n"])
        proxy.flush()
        with pytest.raises(TypeError, match="must be str, not bytes"):
            one_stage(lambda _: sys.stdout.write(b"bytes")).result(WAIT_S)
    assert (tmp_path / "out.txt").read_text(encoding="latin-1") == "ab\n"


def test_the_text_view_writes_a_captured_line_as_a_line_of_its_own() -> None:
    stream = io.StringIO()
    half, go_on = threading.Event(), threading.Event()
    recorder = Recorder()

    def stage(_):
        print("first line")
        sys.stdout.write("half a line")
        half.set()
        assert go_on.wait(WAIT_S)
        sys.stdout.write(", finished\n")
        for i in sw.track(range(3), desc="items"):
            print(f"item {i}")

    run = sw.Pipeline("view", [stage]).start(None, display=TextView(stream, live=False))
    run.subscribe(recorder)
    assert half.wait(WAIT_S)
    recorder.wait_for(lambda s: s.logs_open == 1)
    go_on.set()
    run.result(WAIT_S)
    run.wait(WAIT_S)
    lines = stream.getvalue().splitlines()
    expected = ["first line", "half a line, finished", "item 0", "item 1", "item 2"]
    assert [line for line in lines if line in expected] == expected  # each once, whole
    assert not any("half a line" in line and line != expected[1] for line in lines)


def test_the_live_text_view_prints_captured_lines_above_its_live_line() -> None:
    stream = io.StringIO()
    run = sw.Pipeline("view", [lambda _: print("hello")]).start(
        None, display=TextView(stream, live=True))
    run.result(WAIT_S)
    run.wait(WAIT_S)
    text = stream.getvalue()
    assert "\r\x1b[2Khello\n" in text  # the live line cleared first: never glued to it
    assert text.count("hello") == 1
