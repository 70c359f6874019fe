"""stagewidget: watch and steer long, multi-stage computations from a notebook.

A ``Pipeline`` is a sequence of stages (plain or ``async def`` functions); ``start()``
runs it in the background and returns a ``Run`` whose immutable ``RunStatus`` snapshots
feed the views (a widget in notebooks, a text view elsewhere) and any observer.

The names here (``__all__``) are the public API. Everything else lives in submodules and
may change; the optional parts (``TextView``, ``ProcessExecutor``, ``DaskExecutor``,
``adapters``) are imported when first used.
"""

from __future__ import annotations

import importlib
import sqlite3 as _sqlite3
import typing as _typing
import warnings

from .durable import history as _history
from .durable.cache import clear_cache
from .engine.executors import Executor, InlineExecutor, ThreadExecutor
from .engine.fanout import map  # sw.map: the builtin, counted as the stage's progress
from .engine.progress import advance, cancelled, current_stage, report, set_total, track
from .engine.run import Run
from .engine.run import recent_runs as _recent_runs
from .errors import (
    AlreadyStarted,
    Cancelled,
    ConfigError,
    DamagedRecord,
    IdempotencyConflict,
    InvalidTransition,
    ObserverError,
    PipelineError,
    PipelineNotFound,
    RunNotFound,
    StageWidgetError,
    StoreUnavailable,
    UnsupportedInterpreter,
    WorkerDied,
)
from .pipeline import Pipeline, Stage
from .status import ErrorInfo, RunState, RunStatus, StageState, StageStatus

if _typing.TYPE_CHECKING:
    from . import adapters
    from .engine.cluster import DaskExecutor
    from .engine.process import ProcessExecutor
    from .service.server import Service
    from .views.table import RunList
    from .views.text import TextView

__all__ = [
    "AlreadyStarted",
    "Cancelled",
    "ConfigError",
    "DamagedRecord",
    "DaskExecutor",
    "ErrorInfo",
    "Executor",
    "IdempotencyConflict",
    "InlineExecutor",
    "InvalidTransition",
    "ObserverError",
    "Pipeline",
    "PipelineError",
    "PipelineNotFound",
    "ProcessExecutor",
    "Run",
    "RunNotFound",
    "RunState",
    "RunStatus",
    "Stage",
    "StageState",
    "StageStatus",
    "StageWidgetError",
    "StoreUnavailable",
    "TextView",
    "ThreadExecutor",
    "UnsupportedInterpreter",
    "WorkerDied",
    "__version__",
    "adapters",
    "advance",
    "cancelled",
    "clear_cache",
    "clear_history",
    "current_stage",
    "history",
    "map",
    "report",
    "runs",
    "serve",
    "set_total",
    "track",
]

__version__ = "0.1.0"


def runs() -> RunList:
    """This process's recent runs: a live table with Cancel buttons in a notebook.

    Below them, the latest recorded runs of the history (``sw.history()``) that are not
    among them, at most ``_RUNS_HISTORY``; the list itself holds the live runs.
    """
    from .views.table import RunList

    live = _recent_runs()
    ids = {run.run_id for run in live}
    recorded = [s for s in history(limit=_RUNS_HISTORY + len(ids)) if s.run_id not in ids]
    return RunList(live, recorded[:_RUNS_HISTORY])


_RUNS_HISTORY = 20  # recorded runs sw.runs() shows below the live ones


def history(pipeline: _typing.Any = None, limit: int = 50) -> list[RunStatus]:
    """The recorded runs of every process using this data folder, newest first.

    Each is a ``RunStatus`` snapshot as last recorded (its ``result`` is not recorded:
    it reads as None). A run whose process died before it ended reads as ``lost``.

    Args:
        pipeline: only this pipeline's runs (a ``Pipeline`` or its name); None for all.
        limit: at most this many runs (a positive int).

    Raises:
        ConfigError: ``pipeline`` or ``limit`` is not as described.
    """
    name = getattr(pipeline, "name", pipeline)
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"pipeline must be a Pipeline, its name or None (got {pipeline!r})")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a positive int (got {limit!r})")
    _history.flush()  # this process's runs as they are now
    try:
        return _history.read_history(name, limit)
    except _sqlite3.Error as err:
        _history.warn_once(f"read:{err}", "cannot read the run history: %s", err)
        return []


def serve(pipelines: _typing.Any = (), **options: _typing.Any) -> Service:
    """Serve the HTTP status API from a background thread; see ``stagewidget.service``.

    Every run this process starts is published; ``pipelines`` can be started over HTTP.
    Returns the running ``Service`` (``.url``, ``.token``, ``.stop()``); clients send
    ``Authorization: Bearer <service.token>`` (generated unless ``token=`` is given).
    """
    from .service.server import serve as _serve

    return _serve(pipelines, **options)


def clear_history(pipeline: _typing.Any = None, *, keep: int = 0) -> int:
    """Remove finished runs from the run history; return how many were removed.

    Runs still going on stay. Each pipeline also keeps its newest
    ``$STAGEWIDGET_HISTORY_KEEP`` (1000) finished runs by itself, pruned as runs end.

    Args:
        pipeline: only this pipeline's runs (a ``Pipeline`` or its name); None for all.
        keep: keep each pipeline's newest ``keep`` finished runs (an int >= 0).

    Raises:
        ConfigError: ``pipeline`` or ``keep`` is not as described.
        sqlite3.Error: the history database cannot be written (e.g. locked too long).
    """
    name = getattr(pipeline, "name", pipeline)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigError(f"clear_history takes a pipeline, a pipeline name or None "
                          f"(got {pipeline!r})")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise ConfigError(f"keep must be an int >= 0 (got {keep!r})")
    return _history.clear_history(name, keep)


def _show_public_module(value: object) -> None:
    """Make a re-exported class say ``stagewidget.X`` (reprs, tracebacks, error types).

    Only for classes reachable as ``stagewidget.<qualname>``, so pickling by reference
    (process and Dask workers) still finds them.
    """
    if isinstance(value, type) and value.__module__.startswith(f"{__name__}."):
        value.__module__ = __name__


for _name in __all__:
    if _name in globals():
        _show_public_module(globals()[_name])
del _name

_LAZY = {
    "DaskExecutor": ("stagewidget.engine.cluster", "DaskExecutor"),
    "ProcessExecutor": ("stagewidget.engine.process", "ProcessExecutor"),
    "TextView": ("stagewidget.views.text", "TextView"),
}

# Internals that 0.1.0 exported: still served here, with a warning, until 0.2.0.
_MOVED = {
    "Level": "stagewidget.status",
    "NullProgress": "stagewidget.engine.progress",
    "StageContext": "stagewidget.engine.executors",
    "StageProgress": "stagewidget.engine.progress",
}


def __getattr__(name: str) -> object:
    """Import the optional parts (views, executors, adapters) only when first used."""
    if name == "adapters":  # sw.adapters.keras & co.; each imports its library on use
        return importlib.import_module("stagewidget.adapters")
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        _show_public_module(value)
        globals()[name] = value
        return value
    if name in _MOVED:
        warnings.warn(f"stagewidget.{name} is internal and will be removed from the top-level "
                      f"namespace in 0.2.0; import it from {_MOVED[name]}", DeprecationWarning,
                      stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'stagewidget' has no attribute {name!r}")


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Jupyter Server's entry point (``jupyter server extension enable stagewidget``):
    the dashboard at ``<base_url>stagewidget/``, in ``stagewidget.jupyter``, which is
    imported only by Jupyter Server."""
    return [{"module": "stagewidget.jupyter"}]


def __dir__() -> list[str]:
    """The public names, for completion (``dir(stagewidget)``)."""
    return list(__all__)
