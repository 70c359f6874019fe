"""The exception hierarchy of stagewidget, and nothing else.

Every error stagewidget raises on purpose derives from ``StageWidgetError`` and from
the builtin a user would already catch (``ValueError``, ``KeyError``, ``TypeError``,
``RuntimeError``), so ``except ValueError`` keeps working where it did. The one
exception is ``Cancelled``, a ``BaseException`` on purpose (see its docstring).
"""

from __future__ import annotations

__all__ = [
    "AlreadyStarted",
    "Cancelled",
    "ConfigError",
    "DamagedRecord",
    "IdempotencyConflict",
    "InvalidTransition",
    "ObserverError",
    "PipelineError",
    "PipelineNotFound",
    "RunNotFound",
    "StageWidgetError",
    "StoreUnavailable",
    "UnsupportedInterpreter",
    "WorkerDied",
]


class StageWidgetError(Exception):
    """Base class of every error stagewidget raises on purpose."""


class _KeyErrorMessage(KeyError):
    """A ``KeyError`` whose ``str()`` is its message (``KeyError`` would ``repr()`` it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# -- building and starting --------------------------------------------------------------


class PipelineError(StageWidgetError, ValueError):
    """A pipeline or a stage is not valid, or a call into one got invalid arguments."""


class ConfigError(StageWidgetError, ValueError):
    """A setting is not valid: a run's options (``refresh_hz``, ``executor``), a view's,
    the run registry's or the status service's.

    Distinct from ``PipelineError``, which means the pipeline itself is badly built.
    """


class _RunOptionError(ConfigError, PipelineError):
    """A ``ConfigError`` for a bad run option, which raised ``PipelineError`` up to 0.1.

    Also a ``PipelineError`` so that an ``except PipelineError`` written for 0.1 still
    catches it; catch ``ConfigError`` in new code. Named ``ConfigError`` in reprs and
    tracebacks (and pickled as one): the public name users catch.
    """


_RunOptionError.__name__ = _RunOptionError.__qualname__ = "ConfigError"


class ObserverError(StageWidgetError, TypeError):
    """What was given as an observer (or ``display=``) is not one.

    An observer is a callable taking a ``RunStatus``, or an object with
    ``on_status(snapshot)``.
    """


class InvalidTransition(StageWidgetError, RuntimeError):
    """A run or stage was asked to move to a state its current state does not allow."""


class AlreadyStarted(InvalidTransition):
    """Something that starts once was started again (``Run.launch``, ``Service.start``).

    Stopping and closing are idempotent instead: a second ``stop()``/``close()`` does
    nothing. A subclass of ``InvalidTransition`` (and so of ``RuntimeError``), which
    these calls raised before.
    """


class UnsupportedInterpreter(StageWidgetError, RuntimeError):
    """This Python cannot run stagewidget's runs (a free-threaded build, without the GIL)."""


# -- running --------------------------------------------------------------------------


class WorkerDied(StageWidgetError, RuntimeError):
    """The worker process running a stage ended without an answer (killed, crashed).

    Raised by the process and Dask executors as the failed stage's error.
    """


class Cancelled(BaseException):
    """Raised inside a stage by ``track``/``advance``/``report`` once its run was cancelled.

    It derives from ``BaseException`` (like ``asyncio.CancelledError`` and
    ``KeyboardInterrupt``) so that a stage's own ``except Exception`` does not swallow
    the cancellation. The engine catches it and ends the run ``cancelled``.
    """


# -- looking up (the status service) ----------------------------------------------------


class RunNotFound(StageWidgetError, _KeyErrorMessage):
    """No run is known under the given id."""


class PipelineNotFound(StageWidgetError, _KeyErrorMessage):
    """No pipeline is registered under the given name.

    A sibling of ``RunNotFound``, not a subclass: catching one does not catch the other.
    """


class IdempotencyConflict(StageWidgetError, ValueError):
    """An ``Idempotency-Key`` was used again with a different request."""


class StoreUnavailable(StageWidgetError, RuntimeError):
    """The store cannot be reached (Redis down); the request may be retried later."""


class DamagedRecord(StageWidgetError, ValueError):
    """A run's record in the store cannot be read (a field is missing or not valid).

    Listings skip such a record (and log it); reading that one run answers 500.
    """
