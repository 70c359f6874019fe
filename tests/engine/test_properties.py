"""Property test: random stage behaviours; every snapshot is consistent, the end is right."""

from __future__ import annotations

import re
import threading
from itertools import pairwise

from conftest import WAIT_S, Recorder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stagewidget as sw
from stagewidget import InvalidTransition, RunState, StageState
from stagewidget.status import check_run_transition, check_stage_transition

behaviour = st.one_of(
    st.tuples(st.just("track"), st.integers(0, 3000)),
    st.tuples(st.just("advance"), st.integers(0, 50)),
    st.tuples(st.just("raise"), st.integers(0, 50)),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
)

SHAPE = re.compile(r"^s*[rfcp]?[pk]*$")  # succeeded*, one current, then pending/skipped
LETTER = {StageState.SUCCEEDED: "s", StageState.RUNNING: "r", StageState.FAILED: "f",
          StageState.CANCELLED: "c", StageState.PENDING: "p", StageState.SKIPPED: "k"}


def make_stage(index: int, kind: str, n: int, started: threading.Event, box: dict):
    def stage(acc):
        if kind == "track":
            for _ in sw.track(range(n)):
                pass
        elif kind == "advance":
            sw.set_total(n)
            for _ in range(n):
                sw.advance()
        else:
            for i in sw.track(range(n + 1)):
                if i == n and kind == "raise":
                    raise ValueError(f"stage {index} broke")
                if i == n and kind == "cancel":
                    assert started.wait(WAIT_S)
                    box["run"].cancel()
        return acc + [index]

    return sw.Stage(stage, name=f"s{index}")


def assert_consistent(snapshots: list[sw.RunStatus]) -> None:
    for status in snapshots:
        shape = "".join(LETTER[s.state] for s in status.stages)
        assert SHAPE.match(shape), shape
        assert sum(s.state is StageState.RUNNING for s in status.stages) <= 1
        for stage in status.stages:
            if stage.total is not None and stage.state is not StageState.SUCCEEDED:
                assert 0 <= stage.done <= stage.total
    for before, after in pairwise(snapshots):
        if before.state is not after.state:
            check_run_transition(before.state, after.state)
        for old, new in zip(before.stages, after.stages):
            if old.state is not new.state:
                check_stage_transition(old.name, old.state, new.state)
            elif old.state is StageState.RUNNING:
                assert new.done >= old.done


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(behaviour, min_size=1, max_size=5))
def test_random_pipelines_give_consistent_snapshots_and_the_right_end(plan) -> None:
    started, box = threading.Event(), {}
    pipe = sw.Pipeline("prop", [make_stage(i, k, n, started, box) for i, (k, n) in enumerate(plan)])
    recorder = Recorder()
    run = pipe.start([], display=recorder, refresh_hz=200)
    box["run"] = run
    started.set()
    final = run.wait(WAIT_S)
    assert final.done()
    recorder.wait_for(lambda s: s.done())
    assert_consistent(recorder.snapshots)
    assert recorder.last == final

    stop = next((i for i, (k, _) in enumerate(plan) if k in ("raise", "cancel")), None)
    if stop is None:
        assert final.state is RunState.SUCCEEDED
        assert run.result() == list(range(len(plan)))
        assert all(s.state is StageState.SUCCEEDED for s in final.stages)
        for stage, (_, n) in zip(final.stages, plan):
            assert stage.done == n
    else:
        expected = RunState.FAILED if plan[stop][0] == "raise" else RunState.CANCELLED
        assert final.state is expected
        assert final.stages[stop].state.value == expected.value
        assert [s.state for s in final.stages[:stop]] == [StageState.SUCCEEDED] * stop
        assert all(s.state is StageState.SKIPPED for s in final.stages[stop + 1:])
        if expected is RunState.FAILED:
            assert final.error.stage == f"s{stop}"
            assert final.error.message == f"stage {stop} broke"


def test_consistency_check_itself_rejects_an_illegal_history() -> None:
    a = sw.RunStatus("x", "p", RunState.SUCCEEDED)
    b = sw.RunStatus("x", "p", RunState.RUNNING)
    try:
        assert_consistent([a, b])
    except InvalidTransition:
        return
    raise AssertionError("a succeeded -> running history passed the check")
