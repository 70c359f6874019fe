"""The status model: states, allowed transitions and frozen snapshots of a run.

Everything here is a plain value. A ``RunStatus`` is built by the engine under the run's
lock and handed, as is, to any thread; nothing in it is ever mutated afterwards. Derived
numbers (fractions, rates, ETAs) are properties so a snapshot can never contradict itself.
"""

from __future__ import annotations

import json
import math
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
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
]

MetricValue = float | int | str | bool


class RunState(str, Enum):
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


class StageState(str, Enum):
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
    if total <= 0:
        return 1.0
    return min(max(done / total, 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class Level:
    """One level of progress inside a stage (a ``track()`` loop, possibly nested)."""

    desc: str | None
    done: int
    total: int | None = None

    @property
    def fraction(self) -> float | None:
        """``done / total`` clipped to [0, 1], or None when the total is unknown."""
        return _fraction(self.done, self.total)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data."""
        return {"desc": self.desc, "done": self.done, "total": self.total,
                "fraction": self.fraction}


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
        """Describe ``exc`` (raised in ``stage``), keeping the exception itself."""
        kind = type(exc)
        name = kind.__qualname__
        if kind.__module__ not in ("builtins", "__main__"):
            name = f"{kind.__module__}.{name}"
        text = "".join(traceback.format_exception(kind, exc, exc.__traceback__))
        return cls(type=name, message=str(exc), traceback=text, stage=stage, exception=exc)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (the exception object itself is left out)."""
        return {"type": self.type, "message": self.message, "traceback": self.traceback,
                "stage": self.stage}


@dataclass(frozen=True, slots=True)
class StageStatus:
    """A snapshot of one stage.

    ``done``/``total`` are the stage's own progress (its declared total and
    ``advance()`` calls, or else its outermost ``track()`` loop); ``inner`` holds the
    nested ``track()`` levels below that. ``history`` keeps a bounded series of every
    numeric metric reported, for charts.
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
        return self.done / self.elapsed_s

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the average rate; 0 once finished; None when unknown."""
        if self.state.terminal:
            return 0.0
        rate = self.rate
        if self.state is not StageState.RUNNING or self.total is None or rate is None:
            return None
        return max(self.total - self.done, 0) / rate

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data; non-finite numbers become None."""
        return {
            "name": self.name,
            "state": self.state.value,
            "done": self.done,
            "total": self.total,
            "fraction": self.fraction,
            "desc": self.desc,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "elapsed_s": self.elapsed_s,
            "rate": self.rate,
            "eta_s": self.eta_s,
            "metrics": {k: _json_number(v) for k, v in self.metrics.items()},
            "history": {k: [_json_number(v) for v in vs] for k, vs in self.history.items()},
            "message": self.message,
            "inner": [level.to_dict() for level in self.inner],
        }


@dataclass(frozen=True, slots=True)
class RunStatus:
    """An immutable snapshot of a run, safe to hand to any thread.

    ``current`` is the index of the stage running now (or the one where the run
    stopped); ``elapsed_s`` is measured at the time the snapshot was taken; ``logs``
    holds the latest log lines its stages emitted (when log capture is on).
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
        """Plain JSON-serialisable data.

        A result that JSON cannot represent is given as its ``repr()`` with
        ``result_is_repr`` set to True.
        """
        result, is_repr = _json_value(self.result)
        current = self.current_stage
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "state": self.state.value,
            "current": self.current,
            "current_stage": current.name if current is not None else None,
            "fraction": self.fraction,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "updated_at": self.updated_at,
            "elapsed_s": self.elapsed_s,
            "eta_s": self.eta_s,
            "result": result,
            "result_is_repr": is_repr,
            "error": self.error.to_dict() if self.error is not None else None,
            "retry_of": self.retry_of,
            "logs": list(self.logs),
            "stages": [stage.to_dict() for stage in self.stages],
        }


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_value(value: Any) -> tuple[Any, bool]:
    if value is None or isinstance(value, (bool, int, str)):
        return value, False
    try:
        return json.loads(json.dumps(value, allow_nan=False)), False
    except (TypeError, ValueError, RecursionError):
        return repr(value), True
