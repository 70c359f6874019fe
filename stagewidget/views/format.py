"""Pure functions that turn snapshots into text: bars, durations, rates, lines, summaries.

Nothing here reads a clock or does I/O, so every view renders a snapshot the same way
and each function can be tested with a hand-built ``RunStatus``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from types import MappingProxyType

from ..status import (
    ErrorInfo,
    MetricValue,
    RunState,
    RunStatus,
    StageState,
    StageStatus,
    int_text,
)

__all__ = [
    "STATE_SYMBOLS",
    "STATE_TONES",
    "bar",
    "eta_is_stale",
    "format_count",
    "format_duration",
    "format_metrics",
    "format_rate",
    "progress_held",
    "run_figures",
    "run_line",
    "stage_figures",
    "stage_line",
    "stage_tone",
    "state_symbol",
    "state_tone",
    "summary",
]

STATE_SYMBOLS: Mapping[str, str] = MappingProxyType({
    "pending": "·",
    "running": "▶",
    "succeeded": "✓",
    "cached": "✓",
    "failed": "✗",
    "cancelled": "■",
    "skipped": "↷",
    "lost": "?",
})
_OTHER_SYMBOL = "•"  # a state added later, until it gets its own

# The tone of each state: views map a tone to a colour (the widget to a JupyterLab theme
# variable), so a new state needs one line here, and an unknown one is drawn as "muted".
STATE_TONES: Mapping[str, str] = MappingProxyType({
    "pending": "muted",
    "running": "active",
    "succeeded": "success",
    "cached": "success",
    "failed": "danger",
    "lost": "danger",
    "cancelled": "warning",
    "skipped": "muted",
})

_FULL = "█"
_EIGHTHS = ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")
_UNKNOWN = "·"
_SUFFIXES = ("", "k", "M", "G", "T", "P", "E")
_STATE_WIDTH = 9  # len("succeeded") == len("cancelled")
STALL_MIN_S = 5.0  # a running stage's ETA is stale after this long without progress...
STALL_STEPS = 3.0  # ...and this many of its average steps (slow epochs are not stalls)
_NAME_WIDTH = 10


def format_duration(seconds: float | None) -> str:
    """Format seconds as ``12.3s`` under a minute, ``1:02`` under an hour, else ``1:02:03``.

    None (or a non-finite number) gives ``—``; negative durations count as zero.
    """
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = max(seconds, 0.0)
    if math.floor(seconds * 10 + 0.5) < 600:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(math.floor(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_rate(rate: float | None, unit: str | None = "it") -> str:
    """Format a rate as ``12.3 it/s``, ``1.23k it/s``, or ``2.50 s/it`` below one per second.

    ``unit`` names what is counted (``3.20 batch/s``); None means ``it``. None, zero,
    negative or non-finite rates give an empty string.
    """
    if rate is None or not math.isfinite(rate) or rate <= 0:
        return ""
    unit = _one_line(unit or "") or "it"
    if rate < 1:
        return f"{_si(1 / rate)} s/{unit}"
    return f"{_si(rate)} {unit}/s"


def format_count(done: int, total: int | None, unit: str | None = None) -> str:
    """Format progress as ``42/100`` (or ``42`` without a total); from a million, ``1.23M``.

    A ``unit`` follows the numbers: ``12/100 epochs``.
    """
    text = _count(done)
    if total is not None:
        text = f"{text}/{_count(total)}"
    unit = _one_line(unit) if unit else ""
    return f"{text} {unit}" if unit else text


def format_metrics(metrics: Mapping[str, MetricValue]) -> str:
    """Format metrics as ``loss=0.312 acc=0.9``, in insertion order; floats to 4 digits."""
    return " ".join(f"{name}={_metric(value)}" for name, value in metrics.items())


def bar(fraction: float | None, width: int = 20) -> str:
    """Draw ``fraction`` as ``width`` characters of full and eighth blocks, space-padded.

    None (an unknown total) gives a row of ``·``; fractions are clipped to [0, 1].
    """
    if width <= 0:
        return ""
    if fraction is None or math.isnan(fraction):
        return _UNKNOWN * width
    # the epsilon keeps 0.29 * 100 * 8 == 231.99999999999997 from losing an eighth
    eighths = min(math.floor(min(max(fraction, 0.0), 1.0) * width * 8 + 1e-9), width * 8)
    full, rest = divmod(eighths, 8)
    return (_FULL * full + _EIGHTHS[rest]).ljust(width)


def state_symbol(state: RunState | StageState) -> str:
    """The one-character symbol of a run or stage state (``▶`` running, ``✓`` succeeded...).

    A state this table does not know yet gets ``•``, so a new state never breaks a view.
    """
    return STATE_SYMBOLS.get(state.value, _OTHER_SYMBOL)


def state_tone(state: RunState | StageState) -> str:
    """The tone a view colours ``state`` with: active, success, danger, warning or muted."""
    return STATE_TONES.get(state.value, "muted")


def stage_tone(stage: StageStatus) -> str:
    """The tone of a stage's row: its state's, or ``warning`` while it is ``overdue``."""
    return "warning" if stage.overdue else state_tone(stage.state)


def _expected(stage: StageStatus) -> list[str]:
    """``["~5.0s"]``: a pending stage's expected duration (from the history), if known."""
    if stage.state is StageState.PENDING and stage.expected_s is not None:
        return [f"~{format_duration(stage.expected_s)}"]
    return []


def _slow(stage: StageStatus) -> list[str]:
    """``["slow"]`` for a stage running over twice its expected duration."""
    return ["slow"] if stage.overdue else []


def stage_figures(stage: StageStatus, held_s: float = 0.0) -> str:
    """A stage's figures for a table cell: ``42/100 epoch · 3.20 epoch/s · eta 18.0s``.

    A finished stage reads ``succeeded in 1.2s`` after its counts; one that has not
    run reads its state (``pending``, ``skipped``), and its expected duration from the
    run history when known (``pending · ~5.0s``); an overdue one ends in ``slow``.
    ``held_s``: how long the stage has made no progress (see ``progress_held``); once
    its ETA is stale, ``no progress for 12.0s`` replaces it.
    """
    duration = _stage_duration(stage)
    if stage.state is not StageState.RUNNING and duration is None:
        return " · ".join((stage.state.value, *_expected(stage)))
    parts = [_progress(None, stage.done, stage.total, stage.unit)] \
        if stage.done or stage.total else []
    if stage.state is StageState.RUNNING:
        parts.append(format_rate(stage.rate, stage.unit))
        if eta_is_stale(stage, held_s):
            parts.append(f"no progress for {format_duration(held_s)}")
        elif stage.eta_s is not None:
            parts.append(f"eta {format_duration(stage.eta_s)}")
        parts.extend(_slow(stage))
    else:
        parts.append(f"{stage.state.value} in {format_duration(duration)}")
    return " · ".join(part for part in parts if part)


def run_figures(status: RunStatus, held_s: float = 0.0) -> str:
    """A run's figures for a header: ``45% · 3.2s · eta 4.1s`` (``100% · 0.4s`` at the end).

    The elapsed time keeps its tenths (a 0.4 s run reads ``0.4s``, not ``0.0s``). No
    ETA while the running stage's is stale (``held_s``, see ``stage_figures``).
    """
    parts = [_percent(status.fraction).strip()]
    if status.started_at is not None or status.elapsed_s > 0:
        parts.append(format_duration(status.elapsed_s))
    if not status.done() and status.eta_s is not None and not _stalled(status, held_s):
        parts.append(f"eta {format_duration(status.eta_s)}")
    return " · ".join(parts)


def progress_held(status: RunStatus, mark: tuple[object, float] | None
                  ) -> tuple[tuple[object, float], float]:
    """How long the running stage has made no progress, followed across snapshots.

    A view passes the ``mark`` this returned for its previous snapshot of the run (None
    at first) and keeps the new one. Returns ``(mark, held_s)``: ``held_s`` counts from
    the first snapshot showing the stage's current counts (its own and its loops'),
    on the stage's elapsed time; 0 when no stage is running.
    """
    stage = status.current_stage if status.state is RunState.RUNNING else None
    if stage is None or stage.state is not StageState.RUNNING:
        return (None, 0.0), 0.0
    key = (status.current, stage.done, tuple(level.done for level in stage.inner))
    if mark is None or mark[0] != key:
        return (key, stage.elapsed_s), 0.0
    return mark, max(stage.elapsed_s - mark[1], 0.0)


def eta_is_stale(stage: StageStatus, held_s: float) -> bool:
    """Whether a running stage's ETA no longer means anything: no progress for ``held_s``
    seconds, at least ``STALL_MIN_S`` and ``STALL_STEPS`` times its average step before.

    Its ETA comes from its average rate, which a stage held (waiting on an event, a
    lock, a remote job) keeps claiming long after the work stopped moving. An ETA from
    the run history (``expected_s``) does not depend on the rate, and stays.
    """
    if stage.state is not StageState.RUNNING or stage.done <= 0 or held_s < STALL_MIN_S \
            or stage.expected_s is not None:
        return False
    return held_s >= STALL_STEPS * max(stage.elapsed_s - held_s, 0.0) / stage.done


def _stalled(status: RunStatus, held_s: float) -> bool:
    stage = status.current_stage if status.state is RunState.RUNNING else None
    return stage is not None and eta_is_stale(stage, held_s)


def stage_line(stage: StageStatus, width: int = 20, *, name_width: int = _NAME_WIDTH) -> str:
    """Describe one stage on one line: state, bar, percent, counts, rate, ETA, metrics.

    Counts and rate carry the stage's unit when it has one (``12/100 epoch``,
    ``3.20 epoch/s``). The stage's message and its inner levels follow after ``|``.

    Args:
        stage: the stage to describe.
        width: the bar's width in characters.
        name_width: the stage name is padded to this many characters, to align columns.
    """
    fraction = stage.fraction
    parts = [stage.name.ljust(name_width),
             f"{state_symbol(stage.state)} {stage.state.value.ljust(_STATE_WIDTH)}",
             f"[{bar(fraction, width)}]"]
    if fraction is not None:
        parts.append(_percent(fraction))
    if stage.total is not None or stage.done:
        parts.append(_progress(stage.desc, stage.done, stage.total, stage.unit))
    parts.append(format_rate(stage.rate, stage.unit))
    duration = _stage_duration(stage)
    if stage.state is StageState.RUNNING and stage.eta_s is not None:
        parts.append(f"eta {format_duration(stage.eta_s)}")
    elif stage.state.terminal and duration is not None:
        parts.append(f"in {format_duration(duration)}")
    parts.extend(_expected(stage) + _slow(stage))
    parts.append(format_metrics(stage.metrics))
    segments = [" ".join(part for part in parts if part)]
    if stage.message:
        segments.append(_one_line(stage.message))
    if stage.inner:
        segments.append(" > ".join(_progress(lv.desc, lv.done, lv.total, lv.unit)
                                   for lv in stage.inner))
    return " | ".join(segments)


def run_line(status: RunStatus, width: int = 20, held_s: float = 0.0) -> str:
    """Describe a whole run on one line: state, overall bar, current stage, elapsed, ETA.

    While the running stage's ETA is stale (``held_s``, see ``stage_figures``), the line
    says ``no progress for 12.0s`` instead of an ETA.
    """
    segments = [f"{status.pipeline} {state_symbol(status.state)} {status.state.value} "
                f"[{bar(status.fraction, width)}] {_percent(status.fraction)}"]
    index = status.current
    if status.state is RunState.RUNNING and index is not None:
        stage = status.stages[index]
        parts = [f"{index + 1}/{len(status.stages)} {stage.name}"]
        if stage.total is not None or stage.done:
            parts.append(_progress(stage.desc, stage.done, stage.total, stage.unit))
        parts.append(format_rate(stage.rate, stage.unit))
        parts.extend(_slow(stage))
        segments.append(" ".join(part for part in parts if part))
    if status.state.terminal:
        segments.append(f"in {format_duration(status.elapsed_s)}")
    elif status.started_at is not None:
        times = f"elapsed {format_duration(status.elapsed_s)}"
        eta_s = status.eta_s
        if _stalled(status, held_s):
            times = f"{times} no progress for {format_duration(held_s)}"
        elif eta_s is not None:
            times = f"{times} eta {format_duration(eta_s)}"
        segments.append(times)
    return " | ".join(segments)


def summary(status: RunStatus) -> str:
    """Summarise a run: a header (outcome, duration, error), then one line per stage."""
    name_width = max((len(stage.name) for stage in status.stages), default=0)
    lines = [_header(status)]
    for stage in status.stages:
        duration = _stage_duration(stage)
        parts = [state_symbol(stage.state), stage.name.ljust(name_width),
                 stage.state.value.ljust(_STATE_WIDTH),
                 "" if duration is None else format_duration(duration),
                 format_metrics(stage.metrics)]
        lines.append(("  " + " ".join(part for part in parts if part)).rstrip())
    return "\n".join(lines)


def _header(status: RunStatus) -> str:
    text = f"{status.pipeline} {status.state.value}"
    if status.done():
        text += f" in {format_duration(status.elapsed_s)}"
    elif status.started_at is not None:
        text += f" for {format_duration(status.elapsed_s)}"
    where = _stopped_in(status)
    if where is not None:
        text += f" at stage {where!r}"
    if status.error is not None:
        text += f": {_error_text(status.error)}"
    return text


def _stopped_in(status: RunStatus) -> str | None:
    """The stage a failed or cancelled run stopped in, if known."""
    if status.state is RunState.FAILED and status.error is not None:
        return status.error.stage
    if status.state is RunState.CANCELLED:
        return next((s.name for s in status.stages if s.state is StageState.CANCELLED), None)
    return None


def _error_text(error: ErrorInfo) -> str:
    message = _one_line(error.message)
    return f"{error.type}: {message}" if message else error.type


def _stage_duration(stage: StageStatus) -> float | None:
    """How long the stage ran: from its timestamps once finished, else its elapsed time."""
    if stage.started_at is not None and stage.finished_at is not None:
        return max(stage.finished_at - stage.started_at, 0.0)
    if stage.started_at is not None or stage.elapsed_s > 0:
        return stage.elapsed_s
    return None


def _progress(desc: str | None, done: int, total: int | None, unit: str | None = None) -> str:
    count = format_count(done, total, unit)
    return f"{_one_line(desc)} {count}" if desc else count


def _percent(fraction: float) -> str:
    # floor, so a run at 99.9% never reads 100%
    return f"{math.floor(fraction * 100 + 1e-9):3d}%"


def _metric(value: MetricValue) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{float(value):.4g}"
    if isinstance(value, int) and abs(value) >= _SI_LIMIT:
        return int_text(value)  # str() of an int past 4,300 digits raises
    return _one_line(str(value))


_SI_LIMIT = 10**21  # the largest suffix is E (10**18)


def _count(n: int) -> str:
    if abs(n) < 1_000_000:
        return str(n)
    return _si(n) if abs(n) < _SI_LIMIT else int_text(n)


def _si(value: float) -> str:
    """Three significant digits and a metric suffix: 12.3, 999, 1.00k, 3.40M."""
    index = 0
    while abs(value) >= 999.5 and index < len(_SUFFIXES) - 1:
        value /= 1000
        index += 1
    digits = 0 if abs(value) >= 99.95 else 1 if abs(value) >= 9.995 else 2
    return f"{value:.{digits}f}{_SUFFIXES[index]}"


def _one_line(text: str) -> str:
    """Collapse newlines and other whitespace, so a message cannot break a line view."""
    return " ".join(text.split())
