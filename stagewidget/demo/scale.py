"""How long the demos and shipped notebooks run: ``STAGEWIDGET_NOTEBOOK_SCALE``.

At the default 1 they run about 10-20 s, so the bars visibly move; the test configuration
sets it small (nbval passes no parameters, but its kernels inherit the environment).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from ..errors import ConfigError

__all__ = ["SCALE_VARIABLE", "demo_scale"]

SCALE_VARIABLE = "STAGEWIDGET_NOTEBOOK_SCALE"


def demo_scale(environ: Mapping[str, str] | None = None) -> float:
    """Return the scale the demos run at: ``$STAGEWIDGET_NOTEBOOK_SCALE``, default 1.

    A demo multiplies its amount of work (epochs, items, pauses) by it.

    Raises:
        ConfigError: the variable is set but not a finite number > 0.
    """
    text = (os.environ if environ is None else environ).get(SCALE_VARIABLE, "").strip()
    if not text:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{SCALE_VARIABLE} must be a number > 0, e.g. 0.1 for a tenth of "
                          f"the work (got {text!r}); unset it for the default 1")
    return value
