"""PyTorch Lightning: a ``Callback`` reporting epochs, steps and metrics to the stage.

::

    def train(data):
        trainer = L.Trainer(max_epochs=10,
                            callbacks=[sw.adapters.lightning.ProgressCallback()])
        trainer.fit(model, data)
        return model

Epochs (out of ``max_epochs``) and the current epoch's batches are two levels of the
stage's progress. Lightning's own bar: its ``TQDMProgressBar`` ("Epoch N", batches, its
postfix numbers as metrics) is captured as one more level, which repeats the batches
level, so ``enable_progress_bar=False`` is the tidy choice; its ``RichProgressBar`` (its
default when rich is installed) is not tqdm and still draws on the console. ``trainer.
callback_metrics`` (what ``self.log`` recorded) go to ``report`` after every training
batch, epoch and validation run, so the view draws their curves.

Uses ``lightning.pytorch`` when installed, else ``pytorch_lightning``: the callback must
come from the package the Trainer is from.

Cancel: the callback sets ``trainer.should_stop`` at the next batch end; ``fit`` ends as
on its own (after ``min_epochs``/``min_steps`` if those are set, Lightning's rule),
the model keeps its weights, and the callback's ``stopped`` is True. Not exercised in
CI here (PyTorch is not installed there); its tests run where torch is
(``pytest --run-torch``).
"""

from __future__ import annotations

from typing import Any

try:
    from lightning.pytorch import Callback
except ImportError:  # the older package name
    from pytorch_lightning import Callback

from ..engine.progress import StageProgress
from ._base import Counter, StageLink

__all__ = ["ProgressCallback"]


class ProgressCallback(Callback):  # type: ignore[misc]
    """Feed a Lightning ``Trainer.fit`` to the running stage; stop it cleanly on Cancel."""

    def __init__(self, *, stage: StageProgress | None = None) -> None:
        super().__init__()
        self._link = StageLink(stage)
        self._epochs: Counter | None = None
        self._steps: Counter | None = None

    @property
    def stopped(self) -> bool:
        """True once the callback stopped training for a Cancel."""
        return self._link.stopped

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Open the epochs level (``max_epochs``; none when training by steps only)."""
        self._close()
        self._link.stopped = False
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        self._epochs = self._link.counter("epoch", epochs)
        if self._epochs is not None:
            self._epochs.n = trainer.current_epoch

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """A step level for the epoch's batches."""
        if self._epochs is not None:
            self._epochs.n = trainer.current_epoch
        if self._steps is not None:
            self._steps.close()
            self._steps = None
        self._steps = self._link.counter("step", trainer.num_training_batches)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Count the batch, report the metrics; ask Lightning to stop once cancelled."""
        if self._steps is not None:
            self._steps.n = batch_idx + 1
        if self._link.cancel_requested():
            self._link.stopped = True
            trainer.should_stop = True
            return
        self._link.report(trainer.callback_metrics)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Count the epoch; report its metrics."""
        if self._steps is not None:
            self._steps.close()
            self._steps = None
        if self._epochs is not None:
            self._epochs.n = trainer.current_epoch + 1
        self._link.report({**trainer.callback_metrics, "epoch": trainer.current_epoch + 1})

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Report the validation metrics (not the sanity check's)."""
        if not trainer.sanity_checking:
            self._link.report(trainer.callback_metrics)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """Leave the stage's levels."""
        self._close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Leave the stage's levels when ``fit`` raised."""
        self._close()

    def _close(self) -> None:
        for counter in (self._steps, self._epochs):
            if counter is not None:
                counter.close()
        self._steps = self._epochs = None
