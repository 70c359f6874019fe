"""Tiny inline-SVG line charts for metric series (no plotting library needed)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

__all__ = ["sparkline_svg"]


def sparkline_svg(name: str, values: Sequence[float], *, width: int = 180,
                  height: int = 48, color: str = "#1f77b4") -> str:
    """Return an ``<svg>`` line chart of ``values`` titled ``name`` with its last value."""
    points = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    label = html.escape(name)
    last = f"{points[-1]:.4g}" if points else "—"
    pad, top = 2, 14
    if len(points) >= 2:
        low, high = min(points), max(points)
        span = (high - low) or 1.0
        step = (width - 2 * pad) / (len(points) - 1)
        coords = " ".join(
            f"{pad + i * step:.1f},{top + (height - top - pad) * (1 - (v - low) / span):.1f}"
            for i, v in enumerate(points)
        )
        line = (f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                f'points="{coords}"/>')
        scale = f"{low:.3g} – {high:.3g}"
    else:
        line, scale = "", ""
    return (
        f'<svg class="sw-chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{label} chart">'
        f'<text x="{pad}" y="10" font-size="10" fill="currentColor">{label} {last}</text>'
        f'<text x="{width - pad}" y="10" font-size="9" text-anchor="end" '
        f'fill="gray">{html.escape(scale)}</text>{line}</svg>'
    )
