"""Formatting: durations, rates, counts, metrics, bars, stage and run lines, summaries."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagewidget import ErrorInfo, RunState, RunStatus, StageState, StageStatus
from stagewidget.status import Level
from stagewidget.views import format as fmt
from stagewidget.views.format import (
    bar,
    format_count,
    format_duration,
    format_metrics,
    format_rate,
    run_line,
    stage_line,
    summary,
)

EIGHTHS = "▏▎▍▌▋▊▉"


def running_train() -> StageStatus:
    return StageStatus("train", StageState.RUNNING, done=45, total=100, started_at=10.0,
                       elapsed_s=45 / 12.3, metrics={"loss": 0.31})


def finished(name: str, seconds: float, state: StageState = StageState.SUCCEEDED
             ) -> StageStatus:
    return StageStatus(name, state, done=10, total=10, started_at=100.0,
                       finished_at=100.0 + seconds, elapsed_s=seconds)


def three_stage_run(**changes: object) -> RunStatus:
    run = RunStatus("r1", "train-model", RunState.RUNNING, current=1, started_at=100.0,
                    elapsed_s=6.0, stages=(finished("load", 2.0), running_train(),
                                           StageStatus("save")))
    return replace(run, **changes)


# -- durations ------------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "text"), [
    (None, "—"),
    (0.0, "0.0s"),
    (0.44, "0.4s"),
    (12.34, "12.3s"),
    (59.94, "59.9s"),
    (59.95, "1:00"),
    (62.0, "1:02"),
    (3599.4, "59:59"),
    (3599.5, "1:00:00"),
    (3723.0, "1:02:03"),
    (90_000.0, "25:00:00"),
])
def test_duration_format_depends_on_magnitude(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_negative_duration_reads_as_zero() -> None:
    assert format_duration(-3.0) == "0.0s"


def test_non_finite_duration_reads_as_unknown() -> None:
    assert format_duration(math.inf) == "—"
    assert format_duration(math.nan) == "—"


# -- rates ----------------------------------------------------------------------------

@pytest.mark.parametrize(("rate", "text"), [
    (12.34, "12.3 it/s"),
    (1.0, "1.00 it/s"),
    (999.4, "999 it/s"),
    (999.5, "1.00k it/s"),
    (1234.0, "1.23k it/s"),
    (3.4e6, "3.40M it/s"),
])
def test_rate_uses_three_significant_digits_and_suffix(rate: float, text: str) -> None:
    assert format_rate(rate) == text


def test_rate_below_one_per_second_reads_as_seconds_per_unit() -> None:
    assert format_rate(0.4) == "2.50 s/it"
    assert format_rate(0.4, "batch") == "2.50 s/batch"


def test_rate_names_its_unit() -> None:
    assert format_rate(12.34, "img") == "12.3 img/s"


@pytest.mark.parametrize("rate", [None, 0.0, -1.0, math.nan, math.inf])
def test_unknown_rate_is_empty(rate: float | None) -> None:
    assert format_rate(rate) == ""


# -- counts and metrics ---------------------------------------------------------------

def test_count_shows_total_when_known() -> None:
    assert format_count(42, 100) == "42/100"
    assert format_count(42, None) == "42"


def test_count_is_exact_below_a_million_and_abbreviated_above() -> None:
    assert format_count(999_999, None) == "999999"
    assert format_count(1_234_567, 10_000_000) == "1.23M/10.0M"


def test_count_and_rate_name_their_unit() -> None:
    assert format_count(12, 100, "epochs") == "12/100 epochs"
    assert format_count(3_400_000, None, " B ") == "3.40M B"
    assert format_count(12, 100, None) == format_count(12, 100, "") == "12/100"
    assert format_rate(3.2, "batch") == "3.20 batch/s"
    assert format_rate(3.2, None) == "3.20 it/s"
    assert format_rate(0.5, "line\nbreak") == "2.00 s/line break"


def test_stage_and_run_lines_show_the_stage_and_level_units() -> None:
    stage = replace(running_train(), desc="Epoch", unit="epoch",
                    inner=(Level("batches", 3, 10, "batch"), Level("step", 7)))
    assert stage_line(stage, width=10) == (
        "train      ▶ running   [████▌     ]  45% Epoch 45/100 epoch 12.3 epoch/s eta 4.5s"
        " loss=0.31 | batches 3/10 batch > step 7"
    )
    run = three_stage_run()
    stages = (run.stages[0], replace(run.stages[1], unit="img"), run.stages[2])
    assert "45/100 img 12.3 img/s" in run_line(replace(run, stages=stages), width=10)


def test_metrics_keep_insertion_order_and_round_floats_to_four_digits() -> None:
    metrics = {"loss": 0.312345, "acc": 0.912, "step": 1200, "phase": "warmup"}
    assert format_metrics(metrics) == "loss=0.3123 acc=0.912 step=1200 phase=warmup"


def test_metric_text_cannot_break_the_line() -> None:
    assert format_metrics({"note": "two\nlines"}) == "note=two lines"


def test_no_metrics_format_as_empty() -> None:
    assert format_metrics({}) == ""


# -- bars -----------------------------------------------------------------------------

@given(st.floats(min_value=0.0, max_value=1.0), st.integers(min_value=1, max_value=60))
def test_bar_fills_its_width_and_draws_the_fraction_to_the_nearest_eighth_below(
        fraction: float, width: int) -> None:
    text = bar(fraction, width)
    partial = text.rstrip(" ").lstrip("█")
    drawn = 8 * text.count("█") + (EIGHTHS.index(partial) + 1 if partial else 0)
    assert len(text) == width
    assert len(partial) <= 1
    assert fraction * width * 8 - 1 < drawn <= fraction * width * 8 + 1e-6


@pytest.mark.parametrize("eighths", range(1, 8))
def test_bar_draws_partial_cell_with_eighth_blocks(eighths: int) -> None:
    assert bar(eighths / 40, 5) == EIGHTHS[eighths - 1] + "    "


def test_bar_draws_full_and_empty() -> None:
    assert bar(1.0, 4) == "████"
    assert bar(0.0, 4) == "    "
    assert bar(0.5, 4) == "██  "


def test_bar_clips_fraction_outside_zero_to_one() -> None:
    assert bar(1.5, 3) == "███"
    assert bar(-0.5, 3) == "   "


def test_bar_for_unknown_total_is_a_fixed_pattern() -> None:
    assert bar(None, 5) == "·····"


def test_bar_of_zero_width_is_empty() -> None:
    assert bar(0.5, 0) == ""


# -- stage lines ----------------------------------------------------------------------

def test_running_stage_line_shows_progress_rate_eta_metrics_message_and_levels() -> None:
    stage = replace(running_train(), message="warming up",
                    inner=(Level("batch", 3, 10), Level("step", 7)))
    assert stage_line(stage, width=10) == (
        "train      ▶ running   [████▌     ]  45% 45/100 12.3 it/s eta 4.5s loss=0.31"
        " | warming up | batch 3/10 > step 7"
    )


@pytest.mark.parametrize(("state", "label"), [
    (StageState.PENDING, "· pending"),
    (StageState.RUNNING, "▶ running"),
    (StageState.SUCCEEDED, "✓ succeeded"),
    (StageState.FAILED, "✗ failed"),
    (StageState.CANCELLED, "■ cancelled"),
    (StageState.SKIPPED, "↷ skipped"),
    (StageState.CACHED, "✓ cached"),
])
def test_stage_line_shows_state_symbol_and_name(state: StageState, label: str) -> None:
    assert label in stage_line(StageStatus("prep", state))


def test_finished_stage_line_shows_duration_instead_of_eta() -> None:
    line = stage_line(finished("load", 2.0), width=4)
    assert line == "load       ✓ succeeded [████] 100% 10/10 5.00 it/s in 2.0s"


def test_stage_line_pads_name_to_align_columns() -> None:
    assert stage_line(StageStatus("a"), width=2, name_width=6) == "a      · pending   [··]"


def test_stage_line_with_unknown_total_has_no_percent() -> None:
    stage = StageStatus("load", StageState.RUNNING, done=7, elapsed_s=1.0, desc="files")
    assert stage_line(stage, width=3) == "load       ▶ running   [···] files 7 7.00 it/s"


def test_stage_message_newlines_are_collapsed() -> None:
    line = stage_line(replace(running_train(), message="a\nb\r\nc"))
    assert "\n" not in line and "\r" not in line
    assert line.endswith("| a b c")


# -- run lines and summaries ----------------------------------------------------------

def test_run_line_shows_overall_progress_current_stage_elapsed_and_eta() -> None:
    assert run_line(three_stage_run(), width=10) == (
        "train-model ▶ running [████▊     ]  48% | 2/3 train 45/100 12.3 it/s"
        " | elapsed 6.0s eta 6.4s"
    )


def test_pending_run_line_has_no_times() -> None:
    run = RunStatus("r1", "train-model", stages=(StageStatus("load"),))
    assert run_line(run, width=4) == "train-model · pending [    ]   0%"


def test_finished_run_line_shows_total_time() -> None:
    run = three_stage_run(state=RunState.SUCCEEDED, elapsed_s=12.3)
    assert run_line(run, width=4) == "train-model ✓ succeeded [████] 100% | in 12.3s"


def test_summary_of_success_lists_each_stage_with_state_and_duration() -> None:
    run = three_stage_run(state=RunState.SUCCEEDED, elapsed_s=12.3, current=2, stages=(
        finished("load", 2.0), finished("train", 9.0), finished("save", 1.3)))
    assert summary(run) == (
        "train-model succeeded in 12.3s\n"
        "  ✓ load  succeeded 2.0s\n"
        "  ✓ train succeeded 9.0s\n"
        "  ✓ save  succeeded 1.3s"
    )


def test_summary_of_failure_names_stage_and_error() -> None:
    error = ErrorInfo("ValueError", "bad input", "Traceback ...", stage="train")
    run = three_stage_run(state=RunState.FAILED, elapsed_s=6.0, error=error, stages=(
        finished("load", 2.0), finished("train", 4.0, StageState.FAILED),
        StageStatus("save", StageState.SKIPPED)))
    lines = summary(run).splitlines()
    assert lines[0] == "train-model failed in 6.0s at stage 'train': ValueError: bad input"
    assert lines[2:] == ["  ✗ train failed    4.0s", "  ↷ save  skipped"]


def test_summary_of_cancellation_names_cancelled_stage() -> None:
    run = three_stage_run(state=RunState.CANCELLED, elapsed_s=3.0, stages=(
        finished("load", 2.0), finished("train", 1.0, StageState.CANCELLED),
        StageStatus("save", StageState.SKIPPED)))
    assert summary(run).splitlines()[0] == "train-model cancelled in 3.0s at stage 'train'"


def test_summary_keeps_final_metrics_of_each_stage() -> None:
    stage = replace(finished("train", 9.0), metrics={"loss": 0.25})
    run = three_stage_run(state=RunState.SUCCEEDED, stages=(stage,))
    assert summary(run).splitlines()[1] == "  ✓ train succeeded 9.0s loss=0.25"


def test_counts_and_metrics_past_the_int_digit_limit_are_formatted() -> None:
    assert format_count(10**5000, 10**6000) == "1.000000e+5000/1.000000e+6000"
    assert format_count(3, 10**30) == "3/1.000000e+30"
    assert format_metrics({"big": 10**5000, "n": 7}) == "big=1.000000e+5000 n=7"


def test_every_state_has_a_symbol() -> None:
    for state in (*RunState, *StageState):
        assert fmt.state_symbol(state)
