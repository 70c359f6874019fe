"""The exception hierarchy of stagewidget, and nothing else."""

from __future__ import annotations

__all__ = [
    "Cancelled",
    "InvalidTransition",
    "PipelineError",
    "RunNotFound",
    "StageWidgetError",
]


class StageWidgetError(Exception):
    """Base class of every error stagewidget raises on purpose."""


class PipelineError(StageWidgetError, ValueError):
    """A pipeline, a stage or a call's arguments are not valid."""


class InvalidTransition(StageWidgetError, RuntimeError):
    """A run or stage was asked to move to a state its current state does not allow."""


class RunNotFound(StageWidgetError, KeyError):
    """No run is known under the given id."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class Cancelled(BaseException):
    """Raised inside a stage by ``track``/``advance``/``report`` once its run was cancelled.

    It derives from ``BaseException`` (like ``asyncio.CancelledError`` and
    ``KeyboardInterrupt``) so that a stage's own ``except Exception`` does not swallow
    the cancellation. The engine catches it and ends the run ``cancelled``.
    """
