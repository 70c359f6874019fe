"""Hugging Face Transformers: a ``TrainerCallback`` reporting steps and logs to the stage.

::

    def train(data):
        trainer = Trainer(model, args, train_dataset=data,
                          callbacks=[sw.adapters.huggingface.ProgressCallback()])
        trainer.train()
        return trainer

Steps: the Trainer's own tqdm bar (on unless ``disable_tqdm=True``) is captured as the
stage's progress; with ``disable_tqdm=True`` the callback shows the global step out of
``max_steps`` as a level instead. Every ``Trainer.log`` (``loss``, ``learning_rate``,
``grad_norm``, ``epoch``, ``eval_*``) goes to ``report``, and ``best_metric`` once the
Trainer tracks one (``metric_for_best_model``).

Cancel: the callback sets ``control.should_training_stop`` at the next optimizer step;
``train()`` then ends as on its own (its end-of-training hooks, saving and logging run),
returns its ``TrainOutput``, and the model keeps the weights trained so far. The
callback's ``stopped`` is True. Not exercised in CI here (PyTorch is not installed
there); its tests run where torch is (``pytest --run-torch``).
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from ..engine.progress import StageProgress
from ._base import Counter, StageLink

__all__ = ["ProgressCallback"]


class ProgressCallback(TrainerCallback):  # type: ignore[misc]
    """Feed a Hugging Face ``Trainer`` to the running stage; stop it cleanly on Cancel."""

    def __init__(self, *, stage: StageProgress | None = None) -> None:
        self._link = StageLink(stage)
        self._steps: Counter | None = None

    @property
    def stopped(self) -> bool:
        """True once the callback stopped training for a Cancel."""
        return self._link.stopped

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Open the steps level unless the Trainer's own (captured) tqdm bar counts."""
        self._close()
        self._link.stopped = False
        if getattr(args, "disable_tqdm", False):
            self._steps = self._link.counter("step", state.max_steps)
            if self._steps is not None:
                self._steps.n = state.global_step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Count the step; ask the Trainer to stop once cancelled."""
        if self._steps is not None:
            self._steps.n = state.global_step
        if self._link.cancel_requested():
            self._link.stopped = True
            control.should_training_stop = True

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        """Report what the Trainer logs, and the best metric so far."""
        values = dict(logs or {})
        if state.best_metric is not None:
            values["best_metric"] = state.best_metric
        self._link.report(values)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Leave the stage's levels."""
        self._close()

    def _close(self) -> None:
        if self._steps is not None:
            self._steps.close()
            self._steps = None
