"""The status model: transitions, derived numbers, JSON form."""

from __future__ import annotations

import json
import math
import os
import traceback
from dataclasses import replace

import pytest

from stagewidget import (
    ErrorInfo,
    InvalidTransition,
    RunState,
    RunStatus,
    StageState,
    StageStatus,
)
from stagewidget.status import (
    RUN_TRANSITIONS,
    Level,
    check_run_transition,
    check_stage_transition,
)


@pytest.mark.parametrize("state", list(RunState))
def test_terminal_run_states_allow_no_transition(state: RunState) -> None:
    if state.terminal:
        for new in RunState:
            with pytest.raises(InvalidTransition, match=f"from '{state.value}' to '{new.value}'"):
                check_run_transition(state, new)
    else:
        assert RUN_TRANSITIONS[state]


def test_pending_run_cannot_succeed_without_running() -> None:
    with pytest.raises(InvalidTransition):
        check_run_transition(RunState.PENDING, RunState.SUCCEEDED)
    check_run_transition(RunState.PENDING, RunState.RUNNING)


def test_stage_transition_error_names_stage_and_states() -> None:
    with pytest.raises(InvalidTransition, match="stage 'train' cannot go from 'succeeded' to 'running'"):
        check_stage_transition("train", StageState.SUCCEEDED, StageState.RUNNING)


def test_running_stage_cannot_be_skipped() -> None:
    with pytest.raises(InvalidTransition):
        check_stage_transition("x", StageState.RUNNING, StageState.SKIPPED)


def test_states_serialise_as_lower_case_strings() -> None:
    assert json.dumps([RunState.CANCELLED, StageState.SKIPPED]) == '["cancelled", "skipped"]'
    assert str(RunState.RUNNING) == "running"


def test_stage_fraction_rate_and_eta_derive_from_counts() -> None:
    stage = StageStatus("train", StageState.RUNNING, done=25, total=100, elapsed_s=5.0)
    assert stage.fraction == 0.25
    assert stage.rate == 5.0
    assert stage.eta_s == 15.0


def test_stage_with_unknown_total_has_no_fraction_or_eta() -> None:
    stage = StageStatus("load", StageState.RUNNING, done=7, elapsed_s=1.0)
    assert stage.fraction is None
    assert stage.rate == 7.0
    assert stage.eta_s is None


def test_succeeded_stage_is_complete_even_without_total() -> None:
    assert StageStatus("load", StageState.SUCCEEDED).fraction == 1.0
    assert StageStatus("load", StageState.SUCCEEDED).eta_s == 0.0


def test_fraction_is_clipped_when_done_exceeds_total() -> None:
    assert StageStatus("x", StageState.RUNNING, done=12, total=10).fraction == 1.0


def test_run_fraction_averages_stages_and_eta_extrapolates() -> None:
    stages = (StageStatus("a", StageState.SUCCEEDED),
              StageStatus("b", StageState.RUNNING, done=1, total=2),
              StageStatus("c"), StageStatus("d"))
    status = RunStatus("id", "p", RunState.RUNNING, stages, current=1, elapsed_s=6.0)
    assert status.fraction == pytest.approx(1.5 / 4)
    assert status.eta_s == pytest.approx(6.0 * (1 - 0.375) / 0.375)
    assert status.current_stage is stages[1]


def test_to_dict_is_json_and_keeps_json_results() -> None:
    status = RunStatus("id", "p", RunState.SUCCEEDED, (StageStatus("a", StageState.SUCCEEDED),),
                       result={"accuracy": 0.9, "classes": (1, 2)})
    data = json.loads(json.dumps(status.to_dict(), allow_nan=False))
    assert data["result"] == {"accuracy": 0.9, "classes": [1, 2]}
    assert data["result_is_repr"] is False
    assert data["stages"][0]["state"] == "succeeded"
    assert data["fraction"] == 1.0


def test_to_dict_gives_repr_of_non_json_result() -> None:
    class Model:
        def __repr__(self) -> str:
            return "Model(w=3)"

    data = RunStatus("id", "p", RunState.SUCCEEDED, result=Model()).to_dict()
    assert data["result"] == "Model(w=3)"
    assert data["result_is_repr"] is True


def test_to_dict_turns_non_finite_metrics_into_null() -> None:
    stage = StageStatus("t", StageState.RUNNING, metrics={"loss": math.nan, "acc": 0.5},
                        history={"loss": (1.0, math.inf)})
    text = json.dumps(RunStatus("id", "p", RunState.RUNNING, (stage,)).to_dict(), allow_nan=False)
    data = json.loads(text)["stages"][0]
    assert data["metrics"] == {"loss": None, "acc": 0.5}
    assert data["history"] == {"loss": [1.0, None]}


def test_error_info_keeps_type_message_traceback_and_stage() -> None:
    try:
        raise KeyError("missing column")
    except KeyError as exc:
        info = ErrorInfo.from_exception(exc, "load")
    assert info.type == "KeyError"
    assert "missing column" in info.message
    assert "Traceback" in info.traceback and "test_error_info" in info.traceback
    assert info.stage == "load"
    assert info.to_dict().keys() == {"type", "message", "traceback", "stage"}


def test_error_type_of_library_exception_is_qualified() -> None:
    info = ErrorInfo.from_exception(json.JSONDecodeError("bad", "x", 0))
    assert info.type == "json.decoder.JSONDecodeError"


def test_level_fraction() -> None:
    assert Level("batch", 3, 4).fraction == 0.75
    assert Level("batch", 3).fraction is None
    assert Level("empty", 0, 0).fraction == 1.0


def test_a_level_and_a_stage_carry_their_unit_into_json() -> None:
    assert Level("batch", 3, 4).unit is None and StageStatus("s").unit is None
    level = Level("download", 3, 4, "B")
    stage = StageStatus("train", StageState.RUNNING, done=2, total=5, desc="epochs",
                        inner=(level,), unit="epoch")
    data = json.loads(json.dumps(stage.to_dict(), allow_nan=False))
    assert data["unit"] == "epoch"
    assert data["inner"] == [{"desc": "download", "done": 3, "total": 4, "fraction": 0.75,
                              "unit": "B"}]
    assert Level("x", 1).to_dict()["unit"] is None


def test_snapshots_are_frozen() -> None:
    status = RunStatus("id", "p")
    with pytest.raises(AttributeError):
        status.state = RunState.RUNNING  # type: ignore[misc]


# -- states the next issues need: lost runs and cached stages ---------------------------

def test_lost_is_a_terminal_run_state_only_readers_reach() -> None:
    assert RunState.LOST.value == "lost" and RunState.LOST.terminal
    check_run_transition(RunState.RUNNING, RunState.LOST)
    check_run_transition(RunState.PENDING, RunState.LOST)
    with pytest.raises(InvalidTransition, match="from 'lost' to 'running'"):
        check_run_transition(RunState.LOST, RunState.RUNNING)
    assert RunStatus("id", "p", RunState.LOST).to_dict()["state"] == "lost"


def test_service_state_names_derive_from_the_enum() -> None:
    from stagewidget.service import registry, store

    assert tuple(s.value for s in RunState) == registry.STATES
    assert registry.LOST == "lost"
    assert {"succeeded", "failed", "cancelled", "lost"} == store.TERMINAL


@pytest.mark.parametrize("before", [StageState.PENDING, StageState.RUNNING])
def test_a_cached_stage_is_a_final_success(before: StageState) -> None:
    check_stage_transition("s", before, StageState.CACHED)
    for new in StageState:
        with pytest.raises(InvalidTransition):
            check_stage_transition("s", StageState.CACHED, new)
    stage = StageStatus("s", StageState.CACHED)
    assert stage.state.terminal and stage.state.succeeded
    assert stage.fraction == 1.0 and stage.eta_s == 0.0
    assert stage.to_dict()["state"] == "cached"
    status = RunStatus("id", "p", RunState.RUNNING, (stage, StageStatus("t")))
    assert status.fraction == 0.5


# -- short reprs and a small HTML table ----------------------------------------------

def test_run_status_repr_is_one_short_line() -> None:
    stages = (StageStatus("load", StageState.SUCCEEDED),
              StageStatus("train", StageState.RUNNING, done=42, total=50))
    status = RunStatus("5f2c" * 9, "train-model", RunState.RUNNING, stages, current=1,
                       result=list(range(10_000)))
    assert repr(status) == "<RunStatus train-model running 'train' 92%>"
    assert repr(stages[1]) == "<StageStatus train running 84%>"
    assert repr(RunStatus("x", "p")) == "<RunStatus p pending 0%>"


def test_run_status_html_is_a_small_escaped_table() -> None:
    stages = (StageStatus("<load>", StageState.SUCCEEDED, elapsed_s=1.25),)
    try:
        raise ValueError("bad <input>")
    except ValueError as exc:
        error = ErrorInfo.from_exception(exc, "<load>")
    html = RunStatus("id", "a&b", RunState.FAILED, stages, error=error)._repr_html_()
    assert "<table>" in html and "a&amp;b" in html and "&lt;load&gt;" in html
    assert "1.2 s" in html and "bad &lt;input&gt;" in html
    assert "<load>" not in html


# -- tracebacks start at the user's code ---------------------------------------------

def test_a_stage_error_traceback_starts_at_the_user_code() -> None:
    import stagewidget as sw

    def broken_stage(x):
        raise ValueError("user bug")

    run = sw.Pipeline("p", [broken_stage]).start(None, display=False)
    run.wait(5)
    error = run.status().error
    files = [line for line in error.traceback.splitlines() if line.startswith("  File")]
    assert "test_status.py" in files[0] and "broken_stage" in files[0]
    assert not any("stagewidget" in line for line in files)
    # the exception itself is untouched: its traceback still has the engine's frames
    frames = traceback.extract_tb(run.exception().__traceback__)
    assert frames[0].filename.endswith(os.path.join("stagewidget", "engine", "run.py"))


def test_error_info_built_by_hand_keeps_its_exception() -> None:
    exc = KeyError("k")
    info = ErrorInfo("KeyError", "k", "", exception=exc)
    assert info.exception is exc and replace(info, stage="s").exception is exc
    assert RunStatus("id", "p", RunState.FAILED, error=info).error.exception is exc
