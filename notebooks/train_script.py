"""A training script that shows stagewidget's view wherever it runs.

- ``python notebooks/train_script.py`` in a terminal: the text view on stderr.
- ``%run train_script.py`` in a notebook: the live widget, in the cell that ran it.

About 10 s at the default scale (``STAGEWIDGET_NOTEBOOK_SCALE``, which scales the epochs).
"""

from __future__ import annotations

import random

import stagewidget as sw
from stagewidget.demo import demo_scale

EPOCHS = max(60, round(2500 * demo_scale()))  # 60 are enough to fit; the rest to watch

pipe = sw.Pipeline("train-script")


@pipe.stage
def make_data(n: int) -> list[tuple[float, float]]:
    rng = random.Random(0)
    return [(x, 3.0 * x + 1.0 + rng.gauss(0, 0.1)) for x in (rng.random() for _ in range(n))]


@pipe.stage
def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Fit y = a*x + b by gradient descent, reporting the loss each epoch."""
    a = b = 0.0
    for _ in sw.track(range(EPOCHS), desc="epoch"):
        grad_a = grad_b = loss = 0.0
        for x, y in points:
            err = a * x + b - y
            grad_a += err * x
            grad_b += err
            loss += err * err
        a -= 1.0 * grad_a / len(points)
        b -= 1.0 * grad_b / len(points)
        sw.report(loss=loss / len(points))
    return round(a, 1), round(b, 1)


if __name__ == "__main__":
    slope, intercept = pipe.run(50_000)
    print(f"fitted y = {slope} * x + {intercept}")
