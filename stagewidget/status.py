"""The status model: states, allowed transitions and frozen snapshots of a run.

Everything here is a plain value. A ``RunStatus`` is built by the engine under the run's
lock and handed, as is, to any thread; nothing in it is ever mutated afterwards. Derived
numbers (fractions, rates, ETAs) are properties so a snapshot can never contradict itself.

``to_dict()`` cannot fail, whatever a stage returned or reported: ``json.dumps`` of it
always works (see ``json_safe`` and ``RunStatus.to_dict`` for what becomes of values
JSON cannot hold), so every final status reaches the views and the status store.
"""

from __future__ import annotations

import builtins
import html
import math
import os
import reprlib
import sys
import threading
import traceback
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from enum import StrEnum
from types import MappingProxyType, TracebackType
from typing import Any

from .errors import InvalidTransition

__all__ = [
    "ErrorInfo",
    "Level",
    "MetricValue",
    "Outcome",
    "RunState",
    "RunStatus",
    "StageState",
    "StageStatus",
    "check_run_transition",
    "check_stage_transition",
    "int_text",
    "json_safe",
    "safe_repr",
]

MetricValue = float | int | str | bool


class RunState(StrEnum):
    """Where a run stands. Values are lower-case strings, so they serialise unchanged."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def terminal(self) -> bool:
        """True for the final states (succeeded, failed, cancelled, lost).

        ``LOST`` means the process that ran the run died before it ended, so its end is
        unknown. The engine never moves a live run there: readers (the status service,
        a run history) do, for a record nobody writes any more. It is final for them.
        """
        return self in _RUN_TERMINAL

    def __str__(self) -> str:
        return self.value


class StageState(StrEnum):
    """Where one stage of a run stands.

    ``CACHED`` is a success whose output came from a cache instead of running the stage
    (a pending stage goes there directly, or a running one that found its output
    cached): it is final, counts as done (fraction 1.0) and, like ``SUCCEEDED``, is not
    run again by ``retry()``.
    """

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    CACHED = "cached"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        """True once the stage will not change any more."""
        return self not in (StageState.PENDING, StageState.RUNNING)

    @property
    def succeeded(self) -> bool:
        """True when the stage has its output (it ran, or its output was cached)."""
        return self in (StageState.SUCCEEDED, StageState.CACHED)

    def __str__(self) -> str:
        return self.value


_RUN_TERMINAL = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.LOST}
)

# The one transition table. Terminal states allow nothing; LOST is reached only by
# readers of a record whose owner died (see RunState.terminal).
RUN_TRANSITIONS: Mapping[RunState, frozenset[RunState]] = MappingProxyType(
    {
        RunState.PENDING: frozenset(
            {RunState.RUNNING, RunState.FAILED, RunState.CANCELLED, RunState.LOST}
        ),
        RunState.RUNNING: _RUN_TERMINAL,
        **{state: frozenset() for state in _RUN_TERMINAL},
    }
)

STAGE_TRANSITIONS: Mapping[StageState, frozenset[StageState]] = MappingProxyType(
    {
        StageState.PENDING: frozenset(
            {StageState.RUNNING, StageState.CACHED, StageState.SKIPPED, StageState.CANCELLED}
        ),
        StageState.RUNNING: frozenset(
            {StageState.SUCCEEDED, StageState.CACHED, StageState.FAILED, StageState.CANCELLED}
        ),
        **{state: frozenset() for state in StageState if state.terminal},
    }
)


def check_run_transition(current: RunState, new: RunState) -> None:
    """Raise ``InvalidTransition`` unless a run may go from ``current`` to ``new``."""
    if new not in RUN_TRANSITIONS[current]:
        raise InvalidTransition(f"a run cannot go from {current.value!r} to {new.value!r}")


def check_stage_transition(name: str, current: StageState, new: StageState) -> None:
    """Raise ``InvalidTransition`` unless stage ``name`` may go from ``current`` to ``new``."""
    if new not in STAGE_TRANSITIONS[current]:
        raise InvalidTransition(
            f"stage {name!r} cannot go from {current.value!r} to {new.value!r}"
        )


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _fraction(done: int, total: int | None) -> float | None:
    if total is None:
        return None
    if total <= 0 or done >= total:
        return 1.0
    return max(done / total, 0.0)  # < 1 here, so even ints past float range divide fine


@dataclass(frozen=True, slots=True)
class Level:
    """One level of progress inside a stage (a ``track()`` loop or a library's tqdm bar).

    ``unit`` names what is counted (``"epoch"``, ``"B"``), or None when unsaid (tqdm's
    default ``"it"`` included); views show it beside the count and the rate.
    """

    desc: str | None
    done: int
    total: int | None = None
    unit: str | None = None

    @property
    def fraction(self) -> float | None:
        """``done / total`` clipped to [0, 1], or None when the total is unknown."""
        return _fraction(self.done, self.total)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (never raises; see ``json_safe``)."""
        return {"desc": json_safe(self.desc), "done": json_safe(self.done),
                "total": json_safe(self.total), "fraction": json_safe(self.fraction),
                "unit": json_safe(self.unit)}


class Outcome:
    """The live result and exception of a run: the box its snapshots reach them through.

    A ``Run`` owns one and empties it (``release()``) when the ``Run`` itself is
    garbage-collected, so the snapshots observers and views keep do not keep a run's
    result or exception (and the frames and data it holds) alive: like a
    ``concurrent.futures.Future``, the run holds them. Once released, ``result`` and
    ``exception`` read as None and ``released`` is True. A box built by hand (a
    ``RunStatus(result=...)``) is never released.
    """

    __slots__ = ("exception", "released", "result")

    def __init__(self, result: Any = None, exception: BaseException | None = None) -> None:
        self.result = result
        self.exception = exception
        self.released = False

    def release(self) -> None:
        """Drop the result and the exception (called when the owning run is collected)."""
        self.result = self.exception = None
        self.released = True

    def __repr__(self) -> str:
        return "<Outcome released>" if self.released else "<Outcome>"


_NO_OUTCOME = Outcome()  # shared by snapshots without result or exception; never filled
_UNSET: Any = object()


def _boxed(outcome: Outcome, name: str, value: Any) -> Outcome:
    """``outcome`` if it holds ``value`` as ``name`` already, else a new box holding it."""
    if value is _UNSET or value is getattr(outcome, name):
        return outcome
    return Outcome(**{name: value})


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What went wrong in a run: the exception's type, message, traceback and stage.

    ``exception`` is the exception object itself, kept in the run's ``Outcome`` box: it
    reads as None once the run that raised it has been garbage-collected (the text
    fields stay). A stage's ``traceback`` starts at the user's code: stagewidget's own
    frames before it are left out, as pytest and IPython do (the exception is
    untouched); an error of the engine itself (no ``stage``) keeps every frame.
    """

    type: str
    message: str
    traceback: str
    stage: str | None = None
    outcome: Outcome = field(default=_NO_OUTCOME, compare=False, repr=False)
    exception: InitVar[BaseException | None] = _UNSET

    def __post_init__(self, exception: BaseException | None) -> None:
        object.__setattr__(self, "outcome", _boxed(self.outcome, "exception", exception))

    @classmethod
    def from_exception(cls, exc: BaseException, stage: str | None = None) -> ErrorInfo:
        """Describe ``exc`` (raised in ``stage``), keeping the exception itself.

        Never raises: an exception whose ``__str__`` raises keeps its type, its
        traceback and its stage, with ``<exception str() failed: ...>`` as its message.
        """
        kind = type(exc)
        try:
            name = kind.__qualname__
            if kind.__module__ not in ("builtins", "__main__"):
                name = f"{kind.__module__}.{name}"
        except BaseException as err:
            _reraise_interrupt(err)
            name = kind.__name__
        try:
            tb = exc.__traceback__ if stage is None else _user_frames(exc.__traceback__)
            text = "".join(traceback.format_exception(kind, exc, tb))
        except BaseException as err:
            _reraise_interrupt(err)
            text = f"<traceback unavailable: {_failure(err)}>"
        return cls(type=name, message=_message_of(exc), traceback=text, stage=stage,
                   exception=exc)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (the exception object itself is left out)."""
        return {"type": json_safe(self.type), "message": json_safe(self.message),
                "traceback": json_safe(self.traceback), "stage": json_safe(self.stage)}


def _exception(self: ErrorInfo) -> BaseException | None:
    """The exception itself; None once the run that raised it was garbage-collected."""
    return self.outcome.exception


# Set after the class is built: the name is also the constructor's keyword (an InitVar).
ErrorInfo.exception = property(_exception)  # type: ignore[attr-defined]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without its leading stagewidget frames (the engine calling the stage).

    When every frame is stagewidget's own (an error in the engine itself), all are kept.
    """
    first = tb
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return first if tb is None else tb


@dataclass(frozen=True, slots=True)
class StageStatus:
    """A snapshot of one stage.

    ``done``/``total`` are the stage's own progress (its declared total and
    ``advance()`` calls, or else its outermost ``track()`` loop or library bar, whose
    ``desc`` and ``unit`` it then takes); ``inner`` holds the nested levels below that.
    ``history`` keeps a bounded series of every numeric metric reported, for charts.
    ``expected_s`` is how long the stage usually takes (the median of its recorded
    durations with the same code, see ``stagewidget.durable.eta``), or None without
    history; it feeds ``eta_s`` and ``overdue``.
    """

    name: str
    state: StageState = StageState.PENDING
    done: int = 0
    total: int | None = None
    desc: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    elapsed_s: float = 0.0
    metrics: Mapping[str, MetricValue] = field(default_factory=lambda: _EMPTY)
    history: Mapping[str, tuple[float, ...]] = field(default_factory=lambda: _EMPTY)
    message: str | None = None
    inner: tuple[Level, ...] = ()
    unit: str | None = None
    expected_s: float | None = None

    @property
    def fraction(self) -> float | None:
        """Share of the stage done in [0, 1]; 1.0 once succeeded (or cached); None if unknown."""
        if self.state.succeeded:
            return 1.0
        return _fraction(self.done, self.total)

    @property
    def rate(self) -> float | None:
        """Average units of work per second since the stage started, or None."""
        if self.elapsed_s <= 0 or self.done <= 0:
            return None
        try:
            return self.done / self.elapsed_s
        except OverflowError:  # a count past float range (advance(10**400))
            return None

    @property
    def eta_s(self) -> float | None:
        """Seconds left; 0 once finished; None when unknown.

        While running: its expected duration minus its elapsed time (never below 0)
        when it has one, else the work left at the average rate so far.
        """
        if self.state.terminal:
            return 0.0
        if self.state is StageState.RUNNING and self.expected_s is not None:
            return max(self.expected_s - self.elapsed_s, 0.0)
        rate = self.rate
        if self.state is not StageState.RUNNING or self.total is None or rate is None:
            return None
        try:
            return max(self.total - self.done, 0) / rate
        except OverflowError:  # a total past float range: no meaningful ETA
            return None

    @property
    def overdue(self) -> bool:
        """True while running for more than twice its expected duration."""
        return self.state is StageState.RUNNING and self.expected_s is not None and \
            self.elapsed_s > 2 * self.expected_s

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (never raises; see ``json_safe``)."""
        return {
            "name": json_safe(self.name),
            "state": self.state.value,
            "done": json_safe(self.done),
            "total": json_safe(self.total),
            "fraction": json_safe(self.fraction),
            "desc": json_safe(self.desc),
            "started_at": json_safe(self.started_at),
            "finished_at": json_safe(self.finished_at),
            "elapsed_s": json_safe(self.elapsed_s),
            "rate": json_safe(self.rate),
            "eta_s": json_safe(self.eta_s),
            "expected_s": json_safe(self.expected_s),
            "overdue": self.overdue,
            "metrics": {_json_key(k): json_safe(v) for k, v in self.metrics.items()},
            "history": {_json_key(k): [_json_float(v) for v in vs]
                        for k, vs in self.history.items()},
            "message": json_safe(self.message),
            "inner": [level.to_dict() for level in self.inner],
            "unit": json_safe(self.unit),
        }

    def __repr__(self) -> str:
        return f"<StageStatus {_short(self.name)} {self.state.value}{_percent(self.fraction)}>"


@dataclass(frozen=True, slots=True)
class RunStatus:
    """An immutable snapshot of a run, safe to hand to any thread.

    ``result`` is the last stage's output once the run succeeded. It lives in the run's
    ``Outcome`` box, not in the snapshot: a snapshot kept after its ``Run`` was
    garbage-collected reads ``result`` as None, and ``result_released`` is True (hold
    the ``Run``, or the result itself, to keep it). ``RunStatus(..., result=x)`` and
    ``replace(status, result=x)`` put ``x`` in a box of their own.

    ``current`` is the index of the stage running now (or the one where the run
    stopped); ``elapsed_s`` is measured at the time the snapshot was taken; ``logs``
    holds the latest log lines its stages emitted (``logging`` records when log capture
    is on, and the stages' captured output), the last ``logs_open`` of them still being
    written (a ``\\r``-redrawn progress line, in its latest state). ``logs_total``
    counts the finished lines ever logged, older ones included, so a view can print
    each finished line once; neither count is part of ``to_dict()``.
    """

    run_id: str
    pipeline: str
    state: RunState = RunState.PENDING
    stages: tuple[StageStatus, ...] = ()
    current: int | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = 0.0
    elapsed_s: float = 0.0
    error: ErrorInfo | None = None
    retry_of: str | None = None
    logs: tuple[str, ...] = ()
    logs_total: int = 0
    logs_open: int = 0
    outcome: Outcome = field(default=_NO_OUTCOME, compare=False, repr=False)
    result: InitVar[Any] = _UNSET

    def __post_init__(self, result: Any) -> None:
        object.__setattr__(self, "outcome", _boxed(self.outcome, "result", result))

    @property
    def result_released(self) -> bool:
        """True once the run was garbage-collected and its result dropped (see Outcome)."""
        return self.outcome.released

    def done(self) -> bool:
        """True once the run has reached a final state."""
        return self.state.terminal

    @property
    def current_stage(self) -> StageStatus | None:
        """The stage at ``current``, if any."""
        return None if self.current is None else self.stages[self.current]

    @property
    def fraction(self) -> float:
        """Overall share done: each stage weighs the same; unknown totals count as 0."""
        if self.state is RunState.SUCCEEDED:
            return 1.0
        if not self.stages:
            return 0.0
        return sum(s.fraction or 0.0 for s in self.stages) / len(self.stages)

    @property
    def eta_s(self) -> float | None:
        """Seconds left; 0 once ended; None when unknown.

        When every stage after the current one has an expected duration (from the run
        history): the current stage's ``eta_s`` plus those durations. Otherwise
        extrapolated from the time taken so far and the share done.
        """
        if self.state.terminal:
            return 0.0
        if self.state is RunState.RUNNING and self.current is not None:
            remaining = self.stages[self.current].eta_s
            later = [s.expected_s for s in self.stages[self.current + 1:]]
            if remaining is not None and None not in later:
                return remaining + sum(s for s in later if s is not None)
        fraction = self.fraction
        if self.state is not RunState.RUNNING or fraction <= 0.0 or self.elapsed_s <= 0:
            return None
        return self.elapsed_s * (1.0 - fraction) / fraction

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data; never raises, and ``json.dumps`` of it never does.

        The result is given as JSON when it is JSON data (dicts with string keys, lists,
        tuples, strings, finite floats, ints of at most 4,300 digits, bools, None; at most
        100 levels deep and a million items). Otherwise ``result`` is a bounded
        ``repr()`` (at most 1,000 characters) and ``result_is_repr`` is True; when even
        that fails, ``result`` is None and ``result_unavailable`` says why (else it is
        None). Everything else goes through ``json_safe``.
        """
        unavailable: str | None
        if self.outcome.released:
            result, is_repr, unavailable = None, False, _RELEASED
        else:
            result, is_repr, unavailable = _json_result(self.outcome.result)
        current = self.current_stage
        return {
            "run_id": json_safe(self.run_id),
            "pipeline": json_safe(self.pipeline),
            "state": self.state.value,
            "current": json_safe(self.current),
            "current_stage": json_safe(current.name) if current is not None else None,
            "fraction": json_safe(self.fraction),
            "created_at": json_safe(self.created_at),
            "started_at": json_safe(self.started_at),
            "finished_at": json_safe(self.finished_at),
            "updated_at": json_safe(self.updated_at),
            "elapsed_s": json_safe(self.elapsed_s),
            "eta_s": json_safe(self.eta_s),
            "result": result,
            "result_is_repr": is_repr,
            "result_unavailable": unavailable,
            "error": self.error.to_dict() if self.error is not None else None,
            "retry_of": json_safe(self.retry_of),
            "logs": [json_safe(line) for line in self.logs],
            "stages": [stage.to_dict() for stage in self.stages],
        }

    def __repr__(self) -> str:
        stage = self.current_stage
        where = f" {safe_repr(stage.name, 40)}" if stage is not None and \
            self.state is RunState.RUNNING else ""
        return f"<RunStatus {_short(self.pipeline)} {self.state.value}{where}" \
               f"{_percent(self.fraction)}>"

    def _repr_html_(self) -> str:
        """A small HTML table (one row a stage) for a notebook; no widgets needed."""
        rows = "".join(
            f"<tr><td>{_html(s.name)}</td><td>{s.state.value}</td>"
            f"<td>{_html(_percent(s.fraction).strip())}</td>"
            f"<td>{s.elapsed_s:.1f} s</td></tr>"
            for s in self.stages
        )
        error = "" if self.error is None else \
            f"<p><b>{_html(self.error.type)}</b>: {_html(self.error.message)}</p>"
        return (f"<div><b>{_html(self.pipeline)}</b> {self.state.value}"
                f"{_html(_percent(self.fraction))} <code>{_html(self.run_id[:8])}</code>"
                f"<table><tr><th>stage</th><th>state</th><th>done</th><th>time</th></tr>"
                f"{rows}</table>{error}</div>")


def _result(self: RunStatus) -> Any:
    """The last stage's output; None before the end and once released (see the class)."""
    return self.outcome.result


# Set after the class is built: the name is also the constructor's keyword (an InitVar).
RunStatus.result = property(_result)  # type: ignore[attr-defined]

_RELEASED = "released: the run was garbage-collected, and its result with it"


def _short(name: str, limit: int = 40) -> str:
    """A name for a one-line repr: as is when plain, else quoted and cut to ``limit``."""
    plain = isinstance(name, str) and name.isprintable() and " " not in name \
        and len(name) <= limit
    return name if plain else safe_repr(name, limit)


def _percent(fraction: float | None) -> str:
    return "" if fraction is None else f" {fraction:.0%}"


def _html(text: Any) -> str:
    return html.escape(text if isinstance(text, str) else safe_repr(text))


# -- JSON safety ------------------------------------------------------------------------
# Serialising a snapshot must never fail: a status the store cannot hold leaves a run
# pending forever. Every value reaches JSON through json_safe (one value) or
# _json_result (the run's result); both call user code (repr) only inside try blocks.

_MAX_DEPTH = 100  # a result nested deeper is given as its repr
_MAX_ITEMS = 1_000_000  # ... and so is one with more items (bounds the work, too)
_REPR_CHARS = 1_000  # longest repr given for a value JSON cannot hold
_INT_DIGITS = 4_300  # Python's default int <-> text limit: any JSON reader here has it
_SMALL_INT_BITS = 2_000  # at most 603 digits; Python's limit can never be under 640
_LOG10_2 = math.log10(2)


def json_safe(value: Any) -> Any:
    """Return one value as JSON data that ``json.dumps`` always accepts; never raises.

    None, bools and finite floats stay as they are; non-finite floats become None.
    Strings become plain ``str`` (subclasses included). Ints stay ints up to 4,300
    digits (Python's int-to-text limit, which ``json.dumps`` and ``json.loads`` obey);
    longer ones become a string in scientific notation with 7 significant digits,
    ``"1.000000e+5000"``. Anything else becomes its bounded ``repr()`` (``safe_repr``).
    """
    if value is None or value is True or value is False:
        return value
    kind = type(value)
    if kind is str:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        return value if _int_fits(value) else int_text(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):  # IntEnum & co. (bool, final, was handled above)
        return json_safe(int.__index__(value))
    if isinstance(value, float):
        return json_safe(float.__float__(value))
    return safe_repr(value)


def safe_repr(value: Any, limit: int = _REPR_CHARS) -> str:
    """``repr(value)`` cut to at most ``limit`` characters; never raises.

    Containers are shown to 4 levels and 10 items each; ints past 4,300 digits in
    scientific notation. A ``repr()`` that raises gives ``<T object: repr() failed:
    ...>`` (only a Ctrl-C in the main thread goes on up).
    """
    try:
        return _bounded_repr(value, limit)
    except BaseException as err:
        _reraise_interrupt(err)
        return f"<{_type_name(value)} object: repr() failed: {_failure(err)}>"


def _json_result(value: Any) -> tuple[Any, bool, str | None]:
    """(JSON data or bounded repr or None, whether it is a repr, why it is unavailable)."""
    try:
        return _json_data(value, _MAX_DEPTH, [_MAX_ITEMS], set()), False, None
    except _NotJson:
        pass
    except BaseException as err:
        _reraise_interrupt(err)
    try:
        return _bounded_repr(value, _REPR_CHARS), True, None
    except BaseException as err:
        _reraise_interrupt(err)
        return None, False, f"repr() of the result (a {_type_name(value)}) failed: " \
                            f"{_failure(err)}"


class _NotJson(Exception):
    """The value is not JSON data as it stands (its repr is given instead)."""


def _json_data(value: Any, depth: int, budget: list[int], path: set[int]) -> Any:
    """``value`` as JSON data, exactly, or raise ``_NotJson``."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _NotJson("too many items")
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return value if type(value) is str else str.__str__(value)
    if isinstance(value, int):
        number = int.__index__(value)
        if not _int_fits(number):
            raise _NotJson("an int past the digit limit")
        return number
    if isinstance(value, float):
        real = float.__float__(value)
        if not math.isfinite(real):
            raise _NotJson("a non-finite float")
        return real
    if not isinstance(value, (list, tuple, dict)):
        raise _NotJson("not JSON data")
    if depth <= 0:
        raise _NotJson("nested too deep")
    if id(value) in path:
        raise _NotJson("a circular reference")
    path.add(id(value))
    try:
        if isinstance(value, dict):
            return {_json_data_key(k): _json_data(v, depth - 1, budget, path)
                    for k, v in value.items()}
        return [_json_data(item, depth - 1, budget, path) for item in value]
    finally:
        path.discard(id(value))


def _json_data_key(key: Any) -> str:
    """A dict key as ``json.dumps`` writes it, or raise ``_NotJson``."""
    if isinstance(key, str):
        return key if type(key) is str else str.__str__(key)
    if key is None or key is True or key is False:
        return {None: "null", True: "true", False: "false"}[key]
    if isinstance(key, int):
        number = int.__index__(key)
        if _int_fits(number):
            return int.__repr__(number)
    elif isinstance(key, float):
        real = float.__float__(key)
        if math.isfinite(real):
            return float.__repr__(real)
    raise _NotJson("a key JSON cannot hold")


def _json_key(key: Any) -> str:
    """A mapping key of a snapshot (a metric name) as a plain string."""
    text = json_safe(key)
    return text if isinstance(text, str) else str(text)


def _json_float(value: Any) -> float | None:
    """A number as a finite float, or None (history points, charted as gaps)."""
    try:
        number = float(value)
    except BaseException as err:
        _reraise_interrupt(err)
        return None
    return number if math.isfinite(number) else None


def _int_fits(number: int) -> bool:
    """Whether ``number`` converts to decimal text, here and in any default reader."""
    bits = number.bit_length()
    if bits <= _SMALL_INT_BITS:
        return True
    limit = sys.get_int_max_str_digits()
    limit = _INT_DIGITS if limit == 0 else min(limit, _INT_DIGITS)
    return int(bits * _LOG10_2) + 1 <= limit  # an upper bound of its digit count


def int_text(number: int) -> str:
    """An int of any size in scientific notation, 7 significant digits: ``1.000000e+5000``.

    Cheap however long the int is (no conversion to decimal digits), so it serves ints
    past Python's 4,300-digit int-to-text limit.
    """
    sign = "-" if number < 0 else ""
    log = math.log10(abs(number))  # works for ints past float range
    exponent = math.floor(log)
    mantissa = 10 ** (log - exponent)
    if f"{mantissa:.6f}".startswith("10"):
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{sign}{mantissa:.6f}e+{exponent}"


class _BoundedRepr(reprlib.Repr):
    """``reprlib`` with sizes for a status, that knows long ints and raising reprs."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 4
        self.maxtuple = self.maxlist = self.maxarray = self.maxdict = 10
        self.maxset = self.maxfrozenset = self.maxdeque = 10
        self.maxstring = 200
        self.maxlong = 60
        self.maxother = 200

    def repr1(self, x: Any, level: int) -> str:
        if isinstance(x, int) and not isinstance(x, bool) and not _int_fits(int.__index__(x)):
            return int_text(int.__index__(x))
        return super().repr1(x, level)

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            text = builtins.repr(x)
        except BaseException as err:
            if level == self.maxlevel:  # the value itself: say so to the caller
                raise
            _reraise_interrupt(err)
            return f"<{_type_name(x)} object: repr() failed: {_failure(err)}>"
        if not isinstance(text, str):  # pragma: no cover - builtins.repr checks this
            text = "<repr() returned no str>"
        if len(text) > self.maxother:
            i = max(0, (self.maxother - 3) // 2)
            j = max(0, self.maxother - 3 - i)
            text = text[:i] + "..." + text[len(text) - j:]
        return text


_REPR = _BoundedRepr()


def _bounded_repr(value: Any, limit: int) -> str:
    text = _REPR.repr(value)
    text = text if type(text) is str else str.__str__(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _type_name(value: Any) -> str:
    try:
        return type(value).__qualname__
    except BaseException as err:
        _reraise_interrupt(err)
        return "object"


def _failure(err: BaseException) -> str:
    """``"ValueError: text"`` of an exception, even one whose ``__str__`` raises."""
    return f"{_type_name(err)}: {_message_of(err)}"


def _message_of(exc: BaseException) -> str:
    """``str(exc)``, or ``<exception str() failed: ...>`` when that raises."""
    try:
        return str(exc)
    except BaseException as err:
        _reraise_interrupt(err)
        try:
            why = f"{_type_name(err)}: {err!s}"
        except BaseException as again:
            _reraise_interrupt(again)
            why = _type_name(err)
        return f"<exception str() failed: {why}>"


def _reraise_interrupt(err: BaseException) -> None:
    """Re-raise a real Ctrl-C (in the main thread); other failures of user code are data."""
    if isinstance(err, KeyboardInterrupt) and threading.current_thread() is \
            threading.main_thread():
        raise err
