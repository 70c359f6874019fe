"""Pipeline and Stage definitions: the forms users write and the errors they get."""

from __future__ import annotations

import pytest

import stagewidget as sw
from stagewidget import PipelineError


def load(path):
    return path


def clean(frame):
    return frame


def test_decorator_forms_build_stages_in_order() -> None:
    pipe = sw.Pipeline("p")

    @pipe.stage
    def first(x):
        return x

    @pipe.stage("Second step", total=3)
    def second(x):
        return x

    @pipe.stage(total=2)
    def third(x):
        return x

    assert [(s.name, s.total) for s in pipe.stages] == [
        ("first", None), ("Second step", 3), ("third", 2)]
    assert first(5) == 5  # the decorated function stays a plain function


def test_constructor_form_accepts_functions_and_stage_objects() -> None:
    pipe = sw.Pipeline("p", [load, sw.Stage(clean, name="Clean", total=3)])
    assert [s.name for s in pipe.stages] == ["load", "Clean"]
    assert pipe.stages[1].total == 3


def test_start_on_empty_pipeline_names_the_fix() -> None:
    with pytest.raises(PipelineError, match=r"pipeline 'empty' has no stages; add one with @pipe\.stage"):
        sw.Pipeline("empty").start(1, display=False)


def test_non_callable_stage_is_rejected_with_its_type() -> None:
    with pytest.raises(PipelineError, match=r"must be callable \(got 3, an int\)"):
        sw.Pipeline("p", [3])


def test_duplicate_stage_names_are_rejected() -> None:
    with pytest.raises(PipelineError, match="already has a stage named 'load'"):
        sw.Pipeline("p", [load, sw.Stage(clean, name="load")])


def test_same_function_twice_is_a_duplicate() -> None:
    with pytest.raises(PipelineError, match="already has a stage named 'load'"):
        sw.Pipeline("p", [load, load])


def test_redefining_a_stage_in_a_rerun_cell_replaces_it_in_place() -> None:
    pipe = sw.Pipeline("p")
    namespace: dict = {}
    code = "@pipe.stage\ndef prep(x):\n    return x + {k}\n@pipe.stage\ndef fit(x):\n    return x\n"
    exec(code.format(k=1), {"pipe": pipe, "__name__": "cell"}, namespace)
    exec("@pipe.stage\ndef prep(x):\n    return x + 2\n", {"pipe": pipe, "__name__": "cell"}, namespace)
    assert [s.name for s in pipe.stages] == ["prep", "fit"]
    assert pipe.run(0, display=False) == 2


@pytest.mark.parametrize("total", [-1, 2.5, True, "3"])
def test_bad_totals_are_rejected(total) -> None:
    with pytest.raises(PipelineError, match="total must be a non-negative int or None"):
        sw.Stage(load, total=total)


@pytest.mark.parametrize("name", ["", "   ", None])
def test_pipeline_name_must_be_a_non_empty_string(name) -> None:
    with pytest.raises(PipelineError, match="pipeline name must be a non-empty string"):
        sw.Pipeline(name)


def test_stage_that_takes_two_arguments_is_rejected_when_added() -> None:
    def join(a, b):
        return a

    with pytest.raises(PipelineError, match=r"stage 'join' must accept one positional argument \(its signature is join\(a, b\)\)"):
        sw.Pipeline("p", [load, join])


def test_first_stage_without_parameters_runs_without_input() -> None:
    def make():
        return 41

    def inc(x):
        return x + 1

    assert sw.Pipeline("p", [make, inc]).run(display=False) == 42


def test_start_checks_the_input_against_the_first_stage() -> None:
    def make():
        return 1

    with pytest.raises(PipelineError, match="stage 'make' must accept one positional argument"):
        sw.Pipeline("p", [make]).start("data.csv", display=False)


def test_stage_without_input_given_none_needs_data() -> None:
    with pytest.raises(PipelineError, match="stage 'load' must accept no argument"):
        sw.Pipeline("p", [load]).start(display=False)


def test_stage_decorator_rejects_other_arguments() -> None:
    with pytest.raises(PipelineError, match=r"takes a function or a stage name \(got 3, an int\)"):
        sw.Pipeline("p").stage(3)


def test_unknown_executor_is_a_config_error() -> None:
    with pytest.raises(sw.ConfigError, match=r"executor must be 'thread', 'inline', 'process', a dask\.distributed Client or an Executor \(got 'gpu'\)") as caught:
        sw.Pipeline("p", [load]).start(1, executor="gpu", display=False)
    assert isinstance(caught.value, PipelineError)  # what 0.1 raised: old handlers catch it


@pytest.mark.parametrize("refresh_hz", [0, -1.0, "10", None])
def test_bad_refresh_rate_is_a_config_error(refresh_hz: object) -> None:
    with pytest.raises(sw.ConfigError, match="refresh_hz must be a positive number") as caught:
        sw.Pipeline("p", [load]).start(1, refresh_hz=refresh_hz, display=False)
    assert isinstance(caught.value, PipelineError)  # what 0.1 raised: old handlers catch it
    assert type(caught.value).__name__ == "ConfigError"  # the name users see and catch


def test_bad_display_is_rejected() -> None:
    with pytest.raises(sw.ObserverError, match="display must be None, True, False or an observer"):
        sw.Pipeline("p", [load]).start(1, display="widget")


def test_two_lambdas_need_names() -> None:
    with pytest.raises(PipelineError, match=r"already has a stage named '<lambda>'.*name="):
        sw.Pipeline("p", [lambda x: x, lambda x: x])
