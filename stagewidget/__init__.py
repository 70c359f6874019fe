"""stagewidget: watch and steer long, multi-stage computations from a notebook.

A ``Pipeline`` is a sequence of stages (plain or ``async def`` functions); ``start()``
runs it in the background and returns a ``Run`` whose immutable ``RunStatus`` snapshots
feed the views (a widget in notebooks, a text view elsewhere) and any observer.
"""

from __future__ import annotations

import importlib
import typing as _typing

from .engine.executors import Executor, InlineExecutor, StageContext, ThreadExecutor
from .engine.fanout import map  # sw.map: the builtin, counted as the stage's progress
from .engine.progress import (
    NullProgress,
    StageProgress,
    advance,
    cancelled,
    current_stage,
    report,
    set_total,
    track,
)
from .engine.run import Run
from .engine.run import recent_runs as _recent_runs
from .errors import Cancelled, InvalidTransition, PipelineError, RunNotFound, StageWidgetError
from .pipeline import Pipeline, Stage
from .status import ErrorInfo, Level, RunState, RunStatus, StageState, StageStatus

if _typing.TYPE_CHECKING:
    from . import adapters
    from .engine.cluster import DaskExecutor
    from .service.server import Service
    from .views.table import RunList

__all__ = [
    "Cancelled",
    "DaskExecutor",
    "ErrorInfo",
    "Executor",
    "InlineExecutor",
    "InvalidTransition",
    "Level",
    "NullProgress",
    "Pipeline",
    "PipelineError",
    "Run",
    "RunNotFound",
    "RunState",
    "RunStatus",
    "Stage",
    "StageContext",
    "StageProgress",
    "StageState",
    "StageStatus",
    "StageWidgetError",
    "TextView",
    "ThreadExecutor",
    "__version__",
    "adapters",
    "advance",
    "cancelled",
    "current_stage",
    "map",
    "report",
    "runs",
    "serve",
    "set_total",
    "track",
]

__version__ = "0.1.0"

def runs() -> RunList:
    """This process's recent runs: a live table with Cancel buttons in a notebook."""
    from .views.table import RunList

    return RunList(_recent_runs())


def serve(pipelines: _typing.Any = (), **options: _typing.Any) -> Service:
    """Serve the HTTP status API from a background thread; see ``stagewidget.service``.

    Every run this process starts is published; ``pipelines`` can be started over HTTP.
    Returns the running ``Service`` (``.url``, ``.token``, ``.stop()``); clients send
    ``Authorization: Bearer <service.token>`` (generated unless ``token=`` is given).
    """
    from .service.server import serve as _serve

    return _serve(pipelines, **options)


_LAZY = {"TextView": ("stagewidget.views.text", "TextView"),
         "DaskExecutor": ("stagewidget.engine.cluster", "DaskExecutor")}


def __getattr__(name: str) -> object:
    """Import the optional parts (views, training-loop adapters) only when first used."""
    if name == "adapters":  # sw.adapters.keras & co.; each imports its library on use
        return importlib.import_module("stagewidget.adapters")
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stagewidget' has no attribute {name!r}")
