"""The demos: the terminal demo's pipeline, the scale every demo and shipped notebook reads
from ``STAGEWIDGET_NOTEBOOK_SCALE``, and ``demo --lab`` (JupyterLab on a notebook)."""

from __future__ import annotations

from .pipeline import build_pipeline
from .scale import SCALE_VARIABLE, demo_scale

__all__ = ["SCALE_VARIABLE", "build_pipeline", "demo_scale"]
