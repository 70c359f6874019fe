"""Serialising a snapshot never fails: hostile results, metrics, counts and texts.

A status the store cannot write leaves its run pending forever, so ``json.dumps`` of
``RunStatus.to_dict()`` must work for any snapshot the engine can build.
"""

from __future__ import annotations

import enum
import json
import sys

import pytest

from stagewidget.status import (
    ErrorInfo,
    Level,
    RunState,
    RunStatus,
    StageState,
    StageStatus,
    json_safe,
    safe_repr,
)


class BadRepr:
    def __repr__(self) -> str:
        raise ValueError("no repr for you")


class ExitingRepr:
    def __repr__(self) -> str:
        raise SystemExit(3)


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def nested(depth: int) -> list:
    outer: list = []
    inner = outer
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


def dumped(status: RunStatus) -> dict:
    """``to_dict()`` through strict JSON (no NaN) and back, as the store does it."""
    return json.loads(json.dumps(status.to_dict(), allow_nan=False))


def finished(result: object) -> RunStatus:
    return RunStatus("id", "p", RunState.SUCCEEDED, result=result)


def test_result_int_past_the_digit_limit_is_given_as_a_repr() -> None:
    data = dumped(finished(7**20000))
    assert data["result_is_repr"] is True
    assert data["result"] == "9.136930e+16901"  # 7**20000 has 16,902 digits
    assert data["result_unavailable"] is None


def test_result_list_with_an_element_whose_repr_raises_is_a_bounded_repr() -> None:
    data = dumped(finished([1, BadRepr()]))
    assert data["result_is_repr"] is True
    assert data["result"].startswith("[1, <BadRepr object: repr() failed: ValueError")


def test_result_nested_five_thousand_deep_is_a_bounded_repr() -> None:
    data = dumped(finished(nested(5000)))
    assert data["result_is_repr"] is True
    assert data["result"] == "[[[[[...]]]]]"


def test_result_nested_within_the_depth_limit_stays_json() -> None:
    data = dumped(finished(nested(90)))
    assert data["result_is_repr"] is False
    assert data["result"] == nested(90)


def test_result_with_a_cycle_is_a_bounded_repr() -> None:
    cycle: list = []
    cycle.extend([cycle, cycle])  # also exponential if walked without a path check
    data = dumped(finished(cycle))
    assert data["result_is_repr"] is True
    assert len(data["result"]) <= 1000


def test_result_with_more_than_a_million_items_is_a_bounded_repr() -> None:
    data = dumped(finished(list(range(1_000_001))))
    assert data["result_is_repr"] is True
    assert data["result"].startswith("[0, 1, 2,") and len(data["result"]) <= 1000


def test_result_whose_own_repr_raises_is_unavailable_with_the_reason() -> None:
    data = dumped(finished(BadRepr()))
    assert data["result"] is None
    assert data["result_is_repr"] is False
    assert data["result_unavailable"] == (
        "repr() of the result (a BadRepr) failed: ValueError: no repr for you")


def test_result_whose_repr_raises_system_exit_is_unavailable_too() -> None:
    data = dumped(finished(ExitingRepr()))
    assert data["result"] is None
    assert "SystemExit" in data["result_unavailable"]


def test_result_json_data_keeps_json_key_rules_and_subclasses() -> None:
    class Color(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    data = dumped(finished({1: Color.RED, None: Name("x"), 1.5: (True, 2.5)}))
    assert data["result"] == {"1": 1, "null": "x", "1.5": [True, 2.5]}
    assert data["result_is_repr"] is False


def test_metric_past_the_int_digit_limit_is_a_string() -> None:
    stage = StageStatus("s", metrics={"big": 10**5000, "small": -10**20},
                        history={"big": (float("inf"), 2.0)})
    data = dumped(RunStatus("id", "p", RunState.RUNNING, (stage,)))["stages"][0]
    assert data["metrics"] == {"big": "1.000000e+5000", "small": -10**20}
    assert data["history"] == {"big": [None, 2.0]}


def test_counts_and_levels_past_the_int_digit_limit_are_strings() -> None:
    level = Level("inner", 10**4400, 10**5000)
    stage = StageStatus("s", StageState.RUNNING, done=10**4400, total=-(10**6000) * -1,
                        elapsed_s=2.0, inner=(level,))
    data = dumped(RunStatus("id", "p", RunState.RUNNING, (stage,), current=0))["stages"][0]
    assert data["done"] == "1.000000e+4400"
    assert data["total"] == "1.000000e+6000"
    assert data["inner"][0]["total"] == "1.000000e+5000"
    assert data["fraction"] == pytest.approx(0.0)
    assert data["rate"] is None  # done / elapsed_s is past float range
    assert data["eta_s"] is None


def test_ints_follow_a_lowered_process_digit_limit() -> None:
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        stage = StageStatus("s", done=10**700, metrics={"m": 10**700})
        data = dumped(RunStatus("id", "p", RunState.RUNNING, (stage,), result=[10**700]))
    finally:
        sys.set_int_max_str_digits(old)
    assert data["stages"][0]["done"] == "1.000000e+700"
    assert data["result_is_repr"] is True


def test_texts_that_are_not_plain_strings_become_strings() -> None:
    class Name(str):
        def __str__(self) -> str:
            raise RuntimeError("never called")

    level = Level(BadRepr(), 1, 2)  # type: ignore[arg-type]
    stage = StageStatus(Name("s"), message=Name("m"), inner=(level,),
                        metrics={"o": object()})  # type: ignore[dict-item]
    status = RunStatus("id", Name("p"), RunState.RUNNING, (stage,), current=0,
                       logs=(Name("line"), BadRepr()))  # type: ignore[arg-type]
    data = dumped(status)
    assert data["pipeline"] == "p" and data["current_stage"] == "s"
    assert data["stages"][0]["message"] == "m"
    assert data["stages"][0]["inner"][0]["desc"].startswith("<BadRepr object: repr() failed")
    assert data["stages"][0]["metrics"]["o"].startswith("<object object at")
    assert data["logs"][0] == "line" and data["logs"][1].startswith("<BadRepr object")


def test_error_of_an_exception_whose_str_raises_keeps_type_traceback_and_stage() -> None:
    try:
        raise BadStr()
    except BadStr as exc:
        info = ErrorInfo.from_exception(exc, "train")
        caught = exc
    assert info.type == "test_status_json.BadStr"
    assert info.message == "<exception str() failed: RuntimeError: no str for you>"
    assert info.stage == "train"
    assert info.exception is caught
    assert "raise BadStr()" in info.traceback
    json.dumps(info.to_dict())


@pytest.mark.parametrize("value, expected", [
    (None, None), (True, True), (3, 3), (2.5, 2.5), (float("nan"), None),
    (float("-inf"), None), ("x", "x"), (10**5000, "1.000000e+5000"),
    (-(10**5000), "-1.000000e+5000"), (b"x", "b'x'"),
], ids=["none", "bool", "int", "float", "nan", "-inf", "str", "big-int", "big-negative-int",
        "bytes"])
def test_json_safe_maps_each_value(value: object, expected: object) -> None:
    assert json_safe(value) == expected


def test_safe_repr_never_raises_and_is_bounded() -> None:
    assert safe_repr(BadRepr()) == "<BadRepr object: repr() failed: ValueError: no repr for you>"
    assert len(safe_repr("x" * 10_000)) <= 1000
    assert len(safe_repr([list(range(100))] * 100)) <= 1000
