"""The progress report a remote stage sends home: one record, one wire format.

A stage running elsewhere (a worker process, a Dask task) samples its local
``StageProgress`` into a ``ProgressReport``, sends ``report.to_wire()`` (plain lists,
dicts, strings and numbers: picklable and msgpack-able, as Dask events must be), and the
run's process rebuilds it with ``ProgressReport.from_wire`` and applies it to the
stage's mirror with ``apply_to``. Both executors speak exactly this format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..status import Level, MetricValue

if TYPE_CHECKING:
    from .logs import RunLog
    from .progress import StageProgress

__all__ = ["ProgressReport"]


@dataclass(frozen=True, slots=True)
class ProgressReport:
    """A stage's progress at one moment, and the log lines written since the last report.

    ``lines`` are finished log lines not reported before (each goes in exactly one
    report); ``open_lines`` the latest states of lines still being written. A report
    that does not carry the stage's log (a worker process's output comes by its pipes)
    has ``open_lines=None``.
    """

    done: int
    total: int | None
    desc: str | None
    unit: str | None
    inner: tuple[Level, ...] = ()
    metrics: Mapping[str, MetricValue] = field(default_factory=dict)
    history: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    message: str | None = None
    lines: tuple[str, ...] = ()
    open_lines: tuple[str, ...] | None = None

    @classmethod
    def of(cls, progress: StageProgress, lines: tuple[str, ...] = (),
           open_lines: tuple[str, ...] | None = None) -> ProgressReport:
        """Sample ``progress`` now (from any thread: ``sample()`` takes no lock)."""
        done, total, desc, unit, inner = progress.sample()
        # metrics() and history() are fresh read-only copies: kept as they are
        return cls(done, total, desc, unit, inner, progress.metrics(), progress.history(),
                   progress.message, lines, open_lines)

    def to_wire(self) -> list[Any]:
        """The report as plain lists, dicts and scalars (Dask events and pickles carry it).

        History series stay tuples: msgpack sends them as arrays, pickle as tuples, and
        ``from_wire`` takes either.
        """
        return [self.done, self.total, self.desc, self.unit,
                [[lv.desc, lv.done, lv.total, lv.unit] for lv in self.inner],
                dict(self.metrics), dict(self.history), self.message, list(self.lines),
                None if self.open_lines is None else list(self.open_lines)]

    @classmethod
    def from_wire(cls, data: list[Any]) -> ProgressReport:
        """Rebuild a report sent with ``to_wire()``."""
        done, total, desc, unit, inner, metrics, history, message, lines, open_lines = data
        return cls(done, total, desc, unit, tuple(Level(*level) for level in inner),
                   dict(metrics), {k: tuple(v) for k, v in history.items()}, message,
                   tuple(lines), None if open_lines is None else tuple(open_lines))

    def apply_to(self, progress: StageProgress) -> None:
        """Show this report as ``progress`` (the run's mirror of the remote stage)."""
        progress.mirror(self)
        sink: RunLog | None = progress.log_sink
        if sink is not None and self.open_lines is not None:
            sink.extend(self.lines)
            sink.show_open(progress, self.open_lines)
