"""Keras 3: a ``keras.callbacks.Callback`` reporting epochs, steps and logs to the stage.

::

    def train(data):
        model.fit(x, y, epochs=20, verbose=0,
                  callbacks=[sw.adapters.keras.ProgressCallback()])
        return model

Epochs (``epochs`` given to ``fit``) and the current epoch's steps become two levels
of the stage's progress, so the stage shows an ETA; every training batch's logs
(``loss``, metrics) and every epoch's (with ``val_*``) go to ``report``, which draws
their curves. ``fit(verbose=0)`` is the usual choice: the stage view replaces Keras'
own progress bar.

Cancel: the callback sets ``model.stop_training`` at the next batch end; ``fit`` then
returns normally, with the weights trained so far and its ``History``, and the
callback's ``stopped`` is True. The stage goes on from there (its next ``sw`` call
raises ``sw.Cancelled``; if it returns, its result is kept, and the run ends cancelled
before the next stage, or as succeeded when it was the last one).
"""

from __future__ import annotations

from typing import Any

import keras

from ..engine.progress import StageProgress
from ._base import Counter, StageLink

__all__ = ["ProgressCallback"]


class ProgressCallback(keras.callbacks.Callback):  # type: ignore[misc]  # keras: untyped
    """Feed a Keras ``fit`` to the running stage; stop it cleanly on Cancel."""

    def __init__(self, *, stage: StageProgress | None = None) -> None:
        super().__init__()
        self._link = StageLink(stage)
        self._epochs: Counter | None = None
        self._steps: Counter | None = None

    @property
    def stopped(self) -> bool:
        """True once the callback stopped training for a Cancel."""
        return self._link.stopped

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Open the epochs level (``fit``'s ``epochs``)."""
        self._close()
        self._link.stopped = False
        params = self.params or {}
        self._epochs = self._link.counter("epoch", params.get("epochs"))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Open this epoch's steps level (``steps`` per epoch, when Keras knows it)."""
        if self._epochs is not None:
            self._epochs.n = epoch
        if self._steps is not None:
            self._steps.close()
        self._steps = self._link.counter("step", (self.params or {}).get("steps"))

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Count the step, report its logs; ask Keras to stop once cancelled."""
        if self._steps is not None:
            self._steps.n = batch + 1
        if self._link.cancel_requested():
            self._stop()
            return
        self._link.report(logs or {})

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Count the epoch and report its logs (validation metrics included)."""
        if self._steps is not None:
            self._steps.close()
            self._steps = None
        if self._epochs is not None:
            self._epochs.n = epoch + 1
        if self._link.cancel_requested():
            self._stop()
            return
        self._link.report({**(logs or {}), "epoch": epoch + 1})

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Leave the stage's levels."""
        self._close()

    def _stop(self) -> None:
        self._link.stopped = True
        if self.model is not None:
            self.model.stop_training = True

    def _close(self) -> None:
        for counter in (self._steps, self._epochs):
            if counter is not None:
                counter.close()
        self._steps = self._epochs = None
