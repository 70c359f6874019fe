"""The engine shows runs through the display hook the views layer registers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import WAIT_S

import stagewidget as sw
from stagewidget.engine import hooks


@pytest.fixture
def recording_hook():
    """Register a hook that records what the engine asks of it; restore the old one."""
    before = hooks.display_hook()
    shown: list[tuple[str, sw.Run]] = []
    hooks.set_display_hook(hooks.DisplayHook(
        show=lambda run: shown.append(("show", run)),
        redisplay=lambda run: shown.append(("redisplay", run))))
    yield shown
    hooks.set_display_hook(before)


def failing_once() -> sw.Pipeline:
    calls = []

    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise ValueError("first try fails")
        return x + 1

    return sw.Pipeline("flaky", [flaky])


def test_retry_shows_the_new_run_through_the_hook(recording_hook) -> None:
    run = failing_once().start(1, display=False)
    assert run.wait(WAIT_S).state is sw.RunState.FAILED
    again = run.retry()
    assert again.result(WAIT_S) == 2
    assert recording_hook == [("show", again)]


def test_retry_with_an_observer_or_false_does_not_call_the_hook(recording_hook) -> None:
    run = failing_once().start(1, display=False)
    run.wait(WAIT_S)
    seen = []
    assert run.retry(display=seen.append).result(WAIT_S) == 2
    assert seen and seen[-1].state is sw.RunState.SUCCEEDED
    assert recording_hook == []


def test_a_hook_registered_first_also_shows_started_runs(recording_hook) -> None:
    run = sw.Pipeline("p", [lambda: 1]).start()
    run.wait(WAIT_S)
    assert recording_hook == [("show", run)]


def test_a_bare_run_ending_a_cell_is_redisplayed_through_the_hook(recording_hook) -> None:
    run = sw.Pipeline("p", [lambda: 1]).start(display=False)
    run.wait(WAIT_S)
    run._ipython_display_()
    assert recording_hook == [("redisplay", run)]


def test_starting_a_pipeline_registers_the_views_as_the_hook() -> None:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import stagewidget as sw
        from stagewidget.engine import hooks
        assert hooks.display_hook() is None  # importing registers nothing
        run = sw.Pipeline("p", [lambda x: 1 / x]).start(0, display=False)
        run.wait(60)
        assert hooks.display_hook() is not None
        print(run.retry().exception(60))  # in plain python: the text view, on stderr
    """)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "division by zero"
    assert "p failed" in done.stderr  # the retry's text view drew its summary
