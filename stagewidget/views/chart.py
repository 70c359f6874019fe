"""Tiny inline-SVG line charts for metric series (no plotting library needed).

A chart is saved in the notebook with the widget's state, so it is kept small: at most
``MAX_POINTS`` points (the series is thinned evenly, keeping its last point), integer
coordinates, and its look (font, stroke, colour) left to the style sheet of the view
that shows it, through the ``sw-chart`` class.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

__all__ = ["MAX_POINTS", "sparkline_svg", "thin"]

MAX_POINTS = 32


def thin(values: Sequence[float], max_points: int = MAX_POINTS) -> list[float]:
    """Keep at most ``max_points`` values, evenly spaced, always with the first and last."""
    if len(values) <= max_points:
        return list(values)
    step = (len(values) - 1) / (max_points - 1)
    return [values[round(i * step)] for i in range(max_points)]


def sparkline_svg(name: str, values: Sequence[float], *, width: int = 200,
                  height: int = 40, max_points: int = MAX_POINTS) -> str:
    """Return an ``<svg>`` line chart of ``values`` titled ``name`` with its last value.

    Its tooltip gives the range (``0.012-1``); non-finite values are left out.
    """
    points = thin([v for v in values if isinstance(v, (int, float)) and math.isfinite(v)],
                  max_points)
    last = f" {points[-1]:.4g}" if points else " —"
    pad, top = 2, 12
    line = scale = ""
    if len(points) >= 2:
        low, high = min(points), max(points)
        span = (high - low) or 1.0
        step = (width - 2 * pad) / (len(points) - 1)
        coords = " ".join(
            f"{pad + i * step:.0f},{top + (height - top - pad) * (1 - (v - low) / span):.0f}"
            for i, v in enumerate(points))
        line = f'<polyline points="{coords}"/>'
        scale = f"<title>{low:.3g}–{high:.3g}</title>"
    return (f'<svg class="sw-chart" width="{width}" height="{height}">'
            f'{scale}<text x="{pad}" y="9">{html.escape(name)}{last}</text>{line}</svg>')
