"""The status model: transitions, derived numbers, JSON form."""

from __future__ import annotations

import json
import math

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
