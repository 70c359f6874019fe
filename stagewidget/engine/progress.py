"""The handle a stage uses to report progress, and the functions stage code calls.

Hot path rules: ``track()`` loops and ``advance()`` take no lock, read no clock per
iteration and call no observer. A ``track()`` loop over a list, tuple, range or other
sequence iterates the sequence's own C iterator (the run's sampler reads how far it got
with ``length_hint``); over any other iterable it goes through ``itertools.compress``
with a selector stream whose chunks are counted. Cancellation stops either from the
outside: the sequence iterator is moved to its end, the selector stream raises
``Cancelled`` at its next chunk (chunks shrink to one item when iterations are slow).
"""

from __future__ import annotations

import contextvars
import math
import numbers
import sys
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from itertools import chain, compress, repeat
from operator import length_hint
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from ..errors import Cancelled, PipelineError
from ..status import Level, MetricValue

if TYPE_CHECKING:
    from .libprogress import StageCapture
    from .logs import RunLog
    from .report import ProgressReport

__all__ = [
    "NullProgress",
    "StageProgress",
    "advance",
    "cancelled",
    "current_stage",
    "report",
    "set_total",
    "track",
]

T = TypeVar("T")

# What StageProgress.sample() returns: done, total, desc, unit, inner levels.
Sample = tuple[int, int | None, str | None, str | None, tuple[Level, ...]]

_CURRENT: contextvars.ContextVar[StageProgress | None] = contextvars.ContextVar(
    "stagewidget_current_stage", default=None
)

_BIG = sys.maxsize


class _SeqIterator(Protocol):
    """A builtin sequence iterator: it says what is left and can be moved (list, range...)."""

    def __iter__(self) -> _SeqIterator: ...
    def __next__(self) -> Any: ...
    def __length_hint__(self) -> int: ...
    def __setstate__(self, index: int, /) -> None: ...

_HISTORY_POINTS = 256
_CHUNK_MAX = 1 << 16
_CHUNK_FAST_S = 0.01  # a chunk done faster than this doubles the next one
_CHUNK_SLOW_S = 0.05  # ... slower than this halves it, bounding cancel latency


class _Probe:
    def __len__(self) -> int:
        return 0

    def __getitem__(self, index: int) -> Any:
        raise IndexError(index)


# Builtin iterators that report what is left (__length_hint__) and can be moved to
# their end (__setstate__): the sampler reads them and cancel() stops them.
_SEEKABLE_EXAMPLES: tuple[Any, ...] = (
    [], (), range(0), range(_BIG * 2), "", b"", bytearray(), _Probe())
_SEEKABLE = frozenset(type(iter(x)) for x in _SEEKABLE_EXAMPLES)


def _check_count(what: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise PipelineError(f"{what} must be a non-negative int or None (got {value!r})")
    return int(value)


def _check_desc(desc: Any, what: str = "desc") -> None:
    # The notifier compares descs to see what changed: it must be a plain value.
    if desc is not None and not isinstance(desc, str):
        raise PipelineError(f"track() {what} must be a str or None (got {desc!r}, a "
                            f"{type(desc).__name__})")


def _long_len(sized: Any) -> int | None:
    """The length of ``sized`` when ``len()`` overflows (past ``sys.maxsize``), or None."""
    if isinstance(sized, range):
        return cast(_SeqIterator, iter(sized)).__length_hint__()  # exact, as a Python int
    try:
        length = type(sized).__len__(sized)  # a Python __len__ gives its int as it is
    except Exception:
        return None
    return length if isinstance(length, int) and length >= 0 else None


def _left(iterator: _SeqIterator) -> int | None:
    """Items a sequence iterator has left; None when it cannot say."""
    try:
        return length_hint(iterator)
    except OverflowError:  # a range past sys.maxsize: its own method gives the Python int
        try:
            return iterator.__length_hint__()
        except Exception:
            return None


class _Loop:
    """One ``track()`` loop inside a stage; iterate it once."""

    __slots__ = (
        "_adone",
        "_chunk",
        "_finished",
        "_iter",
        "_progress",
        "_seq",
        "_source",
        "_stopped",
        "_stopped_at",
        "desc",
        "total",
        "unit",
    )

    def __init__(self, progress: StageProgress, source: Any, total: int | None,
                 desc: str | None, unit: str | None = None) -> None:
        self._progress = progress
        self._source = source
        self.desc = desc
        self.total = total
        self.unit = unit
        self._seq: _SeqIterator | None = None
        self._chunk: tuple[int, Iterator[Any]] | None = None
        self._iter: Iterator[Any] | AsyncIterator[Any] | None = None
        self._adone = 0
        self._finished = False
        self._stopped = False
        self._stopped_at: int | None = None

    def __iter__(self) -> Iterator[Any]:
        if self._iter is not None:
            raise RuntimeError("a track() loop can be iterated only once; call track() again")
        source = iter(self._source)
        self._source = None
        if type(source) in _SEEKABLE and self.total is not None \
                and self.total == _left(seq := cast(_SeqIterator, source)):
            # cancel() moves the sequence iterator to its end; _end() then raises
            self._seq = seq
            self._iter = chain(source, self._end())
        else:
            # the selector chunks raise on cancel; an ended loop is seen by active()
            self._iter = compress(source, chain.from_iterable(self._chunks()))
        self._progress._enter(self)
        return self._iter

    def __aiter__(self) -> AsyncIterator[Any]:
        if self._iter is not None:
            raise RuntimeError("a track() loop can be iterated only once; call track() again")
        self._iter = self._async_iter(self._source)
        self._source = None
        self._progress._enter(self)
        return self._iter

    async def _async_iter(self, source: AsyncIterable[Any]) -> AsyncIterator[Any]:
        progress = self._progress
        async for item in source:
            if progress._cancel_requested:
                raise Cancelled(f"stage {progress.name!r} was cancelled")
            self._adone += 1
            yield item
        self._finished = True

    def _chunks(self) -> Iterator[Iterator[bool]]:
        size, base = 1, 0
        progress = self._progress
        last = time.perf_counter()
        while True:
            if self._stopped or progress._cancel_requested:
                raise Cancelled(f"stage {progress.name!r} was cancelled")
            now = time.perf_counter()
            if now - last < _CHUNK_FAST_S:
                size = min(size * 2, _CHUNK_MAX)
            elif now - last > _CHUNK_SLOW_S:
                size = max(size // 2, 1)
            last = now
            base += size
            selectors = repeat(True, size)
            self._chunk = (base, selectors)  # one assignment: the sampler sees a pair
            yield selectors

    def _end(self) -> Iterator[Any]:
        self._finished = True
        if self._stopped or self._progress._cancel_requested:
            raise Cancelled(f"stage {self._progress.name!r} was cancelled")
        return
        yield  # a generator that yields nothing

    def done(self) -> int:
        """Items the loop has handed out so far (called by the sampler)."""
        if self._stopped_at is not None:
            return self._stopped_at
        if self._seq is not None:
            left = _left(self._seq)
            return (self.total or 0) - left if left is not None else 0
        chunk = self._chunk
        if chunk is not None:
            return chunk[0] - length_hint(chunk[1])
        return self._adone

    def active(self) -> bool:
        """True while someone still iterates this loop."""
        if self._finished or self._iter is None:
            return False
        # CPython: when a ``for`` loop is left by ``break`` or an exception, its
        # reference to the iterator goes; ours and getrefcount's argument remain.
        return sys.getrefcount(self._iter) > 2

    def stop(self) -> None:
        """Make the loop end at its next item (from any thread)."""
        self._stopped = True
        seq = self._seq
        if seq is not None and self.total is not None:
            self._stopped_at = self.done()  # moving the iterator to its end would say "all"
            seq.__setstate__(self.total)

    def level(self) -> Level:
        """The loop's progress now."""
        return Level(self.desc, self.done(), self.total, self.unit)


class _Series:
    """A bounded series of a numeric metric; halves its resolution when full."""

    __slots__ = ("count", "stride", "values")

    def __init__(self) -> None:
        self.values: list[float] = []
        self.stride = 1
        self.count = 0

    def append(self, value: float) -> None:
        self.count += 1
        if self.count % self.stride:
            return
        self.values.append(value)
        if len(self.values) >= 2 * _HISTORY_POINTS:
            self.values[:] = self.values[1::2]
            self.stride *= 2


class StageProgress:
    """What a running stage reports through: counts, nested loops, metrics, a message.

    The stage's own thread (and threads it hands this object to) write plain
    attributes without a lock; the run samples them at its refresh rate.
    """

    def __init__(self, name: str, total: int | None = None, *,
                 log_sink: RunLog | None = None) -> None:
        self.name = name
        self.log_sink = log_sink  # the run's bounded log, for engine.logs and engine.output
        self._total = total
        self._manual = total is not None
        self._ones = repeat(None, _BIG)  # next() on it is one atomic C call
        self._extra: deque[int] = deque()
        self._extra_sum = 0
        self._loops: list[_Loop] = []
        self._last_top: Level | None = None
        self._metrics: dict[str, MetricValue] = {}
        self._series: dict[str, _Series] = {}
        self._message: str | None = None
        self._cancel_requested = False
        self._remote: Sample | None = None
        self._remote_history: dict[str, tuple[float, ...]] | None = None
        self._library: StageCapture | None = None  # while tqdm bars are captured

    # -- called by stage code -------------------------------------------------------
    def track(self, iterable: Iterable[T] | AsyncIterable[T], total: int | None = None,
              desc: str | None = None, *, unit: str | None = None) -> Any:
        """Wrap ``iterable`` (sync or async) so each item it yields counts as progress."""
        total = _check_count("track() total", total)
        _check_desc(desc)
        _check_desc(unit, "unit")
        if total is None and hasattr(iterable, "__len__"):
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
            except OverflowError:  # range(10**30): for works, so track() must too
                total = _long_len(iterable)
        if self._cancel_requested:
            raise Cancelled(f"stage {self.name!r} was cancelled")
        return _Loop(self, iterable, total, desc, unit)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units of the stage's own work done."""
        if self._cancel_requested:
            raise Cancelled(f"stage {self.name!r} was cancelled")
        if n == 1:
            next(self._ones)  # the sampler sees the counter moved: no flag to set here
        else:
            self._advance_by(n)

    def _advance_by(self, n: int) -> None:
        if isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 0:
            self._manual = True
            self._extra.append(int(n))
        else:
            raise PipelineError(f"advance() takes a non-negative int (got {n!r})")

    def set_total(self, total: int | None) -> None:
        """Declare (or correct) how many units of work the stage has."""
        self._total = _check_count("set_total()", total)
        self._manual = True

    def report(self, message: str | None = None, /, **metrics: Any) -> None:
        """Publish the latest metrics (numbers or short strings) and an optional message."""
        if self._cancel_requested:
            raise Cancelled(f"stage {self.name!r} was cancelled")
        clean = {name: _metric(name, value) for name, value in metrics.items()}
        if message is not None:
            if not isinstance(message, str):
                raise PipelineError(f"report() message must be a str (got {message!r})")
            self._message = message
        self._record(clean)

    def _record(self, clean: dict[str, MetricValue]) -> None:
        """Publish checked metrics (and chart the numeric ones); never raises ``Cancelled``."""
        self._metrics.update(clean)
        for name, value in clean.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                series = self._series.get(name)
                if series is None:
                    series = self._series.setdefault(name, _Series())
                series.append(_point(value))

    def cancelled(self) -> bool:
        """True once the run was asked to cancel (never raises)."""
        return self._cancel_requested

    @property
    def active(self) -> bool:
        """True: this handle belongs to a running stage (``NullProgress`` says False)."""
        return True

    def activate(self) -> contextvars.Token[StageProgress | None]:
        """Make this the current stage of the calling thread, for ``sw.track`` & co.

        Stage code that starts its own threads passes the handle along and calls this
        first in each thread (or uses the handle's methods directly).
        """
        return _CURRENT.set(self)

    # -- called by the engine ---------------------------------------------------------
    def _enter(self, loop: _Loop) -> None:
        """Push a loop that starts iterating (stage thread); drop the ones that ended."""
        loops = self._loops
        while loops and not loops[-1].active():
            try:
                ended = loops.pop()
            except IndexError:  # another thread of the stage pruned it first
                break
            if not loops and not self._manual and length_hint(self._ones) == _BIG:
                self._last_top = ended.level()
        loops.append(loop)
        if self._cancel_requested:
            loop.stop()

    def request_cancel(self) -> None:
        """Ask the stage to stop: its next progress call raises ``Cancelled``."""
        self._cancel_requested = True
        for loop in tuple(self._loops):
            loop.stop()

    def mirror(self, report: ProgressReport) -> None:
        """Show progress measured elsewhere (a worker process, a cluster task)."""
        self._remote = (report.done, report.total, report.desc, report.unit, report.inner)
        self._metrics = dict(report.metrics)
        self._remote_history = dict(report.history)
        self._message = report.message

    def sample(self) -> Sample:
        """Return (done, total, desc, unit, inner levels) now. Call under the run's lock.

        desc and unit are the outermost level's when it drives the stage's count.
        """
        if self._remote is not None:
            return self._remote
        loops = tuple(self._loops)  # only the stage's threads change the list
        levels = tuple(loop.level() for loop in loops if loop.active())
        if self._manual or length_hint(self._ones) != _BIG:  # a total or advance() calls
            while self._extra:
                self._extra_sum += self._extra.popleft()
            done = _BIG - length_hint(self._ones) + self._extra_sum
            return done, self._total, None, None, levels
        if levels:
            top = levels[0]
            return top.done, top.total, top.desc, top.unit, levels[1:]
        last = loops[0].level() if loops else self._last_top  # the last outer loop, ended
        if last is not None:
            return last.done, last.total, last.desc, last.unit, ()
        return 0, None, None, None, ()

    def metrics(self) -> MappingProxyType[str, MetricValue]:
        """A copy of the latest metrics."""
        return MappingProxyType(dict(self._metrics))

    def history(self) -> MappingProxyType[str, tuple[float, ...]]:
        """A copy of every numeric metric's bounded series."""
        if self._remote_history is not None:
            return MappingProxyType(self._remote_history)
        return MappingProxyType({k: tuple(s.values) for k, s in tuple(self._series.items())})

    @property
    def message(self) -> str | None:
        """The latest message passed to ``report()``."""
        return self._message


class NullProgress:
    """The handle outside a run: every call is a pass-through no-op."""

    name = None
    active = False

    def track(self, iterable: Any, total: int | None = None, desc: str | None = None, *,
              unit: str | None = None) -> Any:
        """Return ``iterable`` unchanged."""
        _check_count("track() total", total)
        _check_desc(desc)
        _check_desc(unit, "unit")
        return iterable

    def advance(self, n: int = 1) -> None:
        """Do nothing."""

    def set_total(self, total: int | None) -> None:
        """Do nothing."""

    def report(self, message: str | None = None, /, **metrics: Any) -> None:
        """Do nothing."""

    def cancelled(self) -> bool:
        """Return False: nothing outside a run is ever cancelled."""
        return False

    def activate(self) -> contextvars.Token[StageProgress | None]:
        """Mark the calling thread as being outside any stage."""
        return _CURRENT.set(None)


_NULL = NullProgress()


def _metric(name: str, value: Any) -> MetricValue:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):  # numpy and friends
        return float(value)
    raise PipelineError(
        f"metric {name!r} must be a number or a string (got {value!r}, "
        f"a {type(value).__name__})"
    )


def _point(value: float) -> float:
    """A metric as a history point; an int past float range is charted as a gap (inf)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def current_stage() -> StageProgress | NullProgress:
    """Return the running stage's progress handle (a no-op handle outside a run)."""
    return _CURRENT.get() or _NULL


def track(iterable: Iterable[T] | AsyncIterable[T], total: int | None = None,
          desc: str | None = None, *, unit: str | None = None) -> Any:
    """Iterate ``iterable`` (``for`` or ``async for``) and report each item as progress.

    ``total`` defaults to ``len(iterable)`` when it has one. Nested calls become inner
    levels of the stage's progress. ``unit`` names what an item is (``"batch"``), for
    the views ("12/100 batch", "3.2 batch/s"). Outside a run, ``iterable`` is returned
    unchanged. Raises ``Cancelled`` in the loop once the run is cancelled.
    """
    progress = _CURRENT.get()
    if progress is None:
        _check_count("track() total", total)
        _check_desc(desc)
        _check_desc(unit, "unit")
        return iterable
    return progress.track(iterable, total, desc, unit=unit)


def advance(n: int = 1) -> None:
    """Count ``n`` units of the current stage's work as done (no-op outside a run).

    Cheap (tens of ns), but per item of a tight loop ``track()`` costs far less.
    """
    progress = _CURRENT.get()
    if progress is None:
        return
    if progress._cancel_requested:  # inlined StageProgress.advance: one call less
        raise Cancelled(f"stage {progress.name!r} was cancelled")
    if n == 1:
        next(progress._ones)
    else:
        progress._advance_by(n)


def set_total(total: int | None) -> None:
    """Set the current stage's total units of work (no-op outside a run)."""
    progress = _CURRENT.get()
    if progress is not None:
        progress.set_total(total)


def report(message: str | None = None, /, **metrics: Any) -> None:
    """Report metrics (``loss=0.3``) and an optional message for the views."""
    progress = _CURRENT.get()
    if progress is not None:
        progress.report(message, **metrics)


def cancelled() -> bool:
    """True when the current run was asked to cancel (False outside a run)."""
    progress = _CURRENT.get()
    return progress is not None and progress._cancel_requested

