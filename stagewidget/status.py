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
import math
import reprlib
import sys
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from .errors import InvalidTransition

__all__ = [
    "ErrorInfo",
    "Level",
    "MetricValue",
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

    @property
    def terminal(self) -> bool:
        """True for the final states (succeeded, failed, cancelled)."""
        return self in _RUN_TERMINAL

    def __str__(self) -> str:
        return self.value


class StageState(StrEnum):
    """Where one stage of a run stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        """True once the stage will not change any more."""
        return self not in (StageState.PENDING, StageState.RUNNING)

    def __str__(self) -> str:
        return self.value


_RUN_TERMINAL = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})

RUN_TRANSITIONS: Mapping[RunState, frozenset[RunState]] = MappingProxyType(
    {
        RunState.PENDING: frozenset({RunState.RUNNING, RunState.FAILED, RunState.CANCELLED}),
        RunState.RUNNING: _RUN_TERMINAL,
        RunState.SUCCEEDED: frozenset(),
        RunState.FAILED: frozenset(),
        RunState.CANCELLED: frozenset(),
    }
)

STAGE_TRANSITIONS: Mapping[StageState, frozenset[StageState]] = MappingProxyType(
    {
        StageState.PENDING: frozenset(
            {StageState.RUNNING, StageState.SKIPPED, StageState.CANCELLED}
        ),
        StageState.RUNNING: frozenset(
            {StageState.SUCCEEDED, StageState.FAILED, StageState.CANCELLED}
        ),
        StageState.SUCCEEDED: frozenset(),
        StageState.FAILED: frozenset(),
        StageState.CANCELLED: frozenset(),
        StageState.SKIPPED: frozenset(),
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


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What went wrong in a run: the exception's type, message, traceback and stage."""

    type: str
    message: str
    traceback: str
    stage: str | None = None
    exception: BaseException | None = field(default=None, compare=False, repr=False)

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
            text = "".join(traceback.format_exception(kind, exc, exc.__traceback__))
        except BaseException as err:
            _reraise_interrupt(err)
            text = f"<traceback unavailable: {_failure(err)}>"
        return cls(type=name, message=_message_of(exc), traceback=text, stage=stage,
                   exception=exc)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (the exception object itself is left out)."""
        return {"type": json_safe(self.type), "message": json_safe(self.message),
                "traceback": json_safe(self.traceback), "stage": json_safe(self.stage)}


@dataclass(frozen=True, slots=True)
class StageStatus:
    """A snapshot of one stage.

    ``done``/``total`` are the stage's own progress (its declared total and
    ``advance()`` calls, or else its outermost ``track()`` loop or library bar, whose
    ``desc`` and ``unit`` it then takes); ``inner`` holds the nested levels below that.
    ``history`` keeps a bounded series of every numeric metric reported, for charts.
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

    @property
    def fraction(self) -> float | None:
        """Share of the stage done in [0, 1]; 1.0 once succeeded; None if unknown."""
        if self.state is StageState.SUCCEEDED:
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
        """Seconds left at the average rate; 0 once finished; None when unknown."""
        if self.state.terminal:
            return 0.0
        rate = self.rate
        if self.state is not StageState.RUNNING or self.total is None or rate is None:
            return None
        try:
            return max(self.total - self.done, 0) / rate
        except OverflowError:  # a total past float range: no meaningful ETA
            return None

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
            "metrics": {_json_key(k): json_safe(v) for k, v in self.metrics.items()},
            "history": {_json_key(k): [_json_float(v) for v in vs]
                        for k, vs in self.history.items()},
            "message": json_safe(self.message),
            "inner": [level.to_dict() for level in self.inner],
            "unit": json_safe(self.unit),
        }


@dataclass(frozen=True, slots=True)
class RunStatus:
    """An immutable snapshot of a run, safe to hand to any thread.

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
    result: Any = field(default=None, compare=False)
    error: ErrorInfo | None = None
    retry_of: str | None = None
    logs: tuple[str, ...] = ()
    logs_total: int = 0
    logs_open: int = 0

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
        """Seconds left, extrapolated from the time taken so far; None when unknown."""
        if self.state.terminal:
            return 0.0
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
        result, is_repr, unavailable = _json_result(self.result)
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
