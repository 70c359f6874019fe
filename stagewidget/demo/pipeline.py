"""A realistic demo pipeline: synthetic data -> features -> logistic regression -> file.

Pure Python (no numpy), so it runs anywhere stagewidget does; about ten seconds at the
default scale (``STAGEWIDGET_NOTEBOOK_SCALE``, which multiplies the epochs).
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from pathlib import Path
from typing import Any

from ..engine.progress import advance, report, track
from ..pipeline import Pipeline
from .scale import demo_scale

__all__ = ["DEMO_EPOCHS", "DEMO_ROWS", "build_pipeline"]

DEMO_ROWS = 60_000
DEMO_EPOCHS = 120  # about 10 s of training on one core of a 2020s laptop


def build_pipeline(*, rows: int = DEMO_ROWS, epochs: int | None = None,
                   seed: int = 7) -> Pipeline:
    """Return the demo pipeline; its input is an output directory (or None for a temp one).

    Args:
        rows: how many synthetic rows to make (80 % train, 20 % test).
        epochs: passes over the training rows; None for ``DEMO_EPOCHS`` times
            ``demo_scale()`` (at least 1).

    Raises:
        ConfigError: ``STAGEWIDGET_NOTEBOOK_SCALE`` is not a number > 0.
    """
    if epochs is None:
        epochs = max(1, round(DEMO_EPOCHS * demo_scale()))
    pipe = Pipeline("demo-train")

    @pipe.stage("load data")
    def load(out_dir: str | None) -> dict[str, Any]:
        rng = random.Random(seed)
        weights = [rng.uniform(-2, 2) for _ in range(8)]
        data = []
        for _ in track(range(rows), desc="rows"):
            x = [rng.gauss(0, 1) for _ in weights]
            score = sum(w * v for w, v in zip(weights, x)) + rng.gauss(0, 0.5)
            data.append((x, 1 if score > 0 else 0))
        return {"out_dir": out_dir, "rows": data}

    @pipe.stage("preprocess", total=2)
    def preprocess(state: dict[str, Any]) -> dict[str, Any]:
        rows = state["rows"]
        columns = list(zip(*(x for x, _ in rows)))
        means = [sum(c) / len(c) for c in columns]
        stds = [math.sqrt(sum((v - m) ** 2 for v in c) / len(c)) or 1.0
                for c, m in zip(columns, means)]
        advance()
        state["rows"] = [([(v - m) / s for v, m, s in zip(x, means, stds)], y)
                         for x, y in rows]
        advance()
        split = int(len(rows) * 0.8)
        state["train"], state["test"] = state["rows"][:split], state["rows"][split:]
        return state

    @pipe.stage
    def train(state: dict[str, Any]) -> dict[str, Any]:
        weights = [0.0] * len(state["train"][0][0])
        rate = 0.1
        for _ in track(range(epochs), desc="epoch"):
            loss = 0.0
            batch = state["train"]
            for x, y in track(batch, desc="sample"):
                z = sum(w * v for w, v in zip(weights, x))
                p = 1 / (1 + math.exp(-max(min(z, 30), -30)))
                loss -= math.log(p if y else 1 - p + 1e-12)
                g = p - y
                weights = [w - rate * g * v for w, v in zip(weights, x)]
            report(loss=loss / len(batch), accuracy=_accuracy(weights, state["test"]))
        state["weights"] = weights
        return state

    @pipe.stage
    def package(state: dict[str, Any]) -> str:
        out = Path(state["out_dir"] or tempfile.mkdtemp(prefix="stagewidget-demo-"))
        out.mkdir(parents=True, exist_ok=True)
        path = out / "model.json"
        accuracy = _accuracy(state["weights"], state["test"])
        path.write_text(json.dumps({"weights": state["weights"], "accuracy": accuracy}))
        report(f"wrote {path}", accuracy=accuracy)
        return str(path)

    return pipe


def _accuracy(weights: list[float], rows: list[tuple[list[float], int]]) -> float:
    hits = sum((sum(w * v for w, v in zip(weights, x)) > 0) == bool(y) for x, y in rows)
    return hits / max(len(rows), 1)
