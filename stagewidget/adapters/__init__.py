"""Training-loop adapters: a library's own callback hooks feed the running stage.

One module per library, each imported only when first used (``import stagewidget``
imports none of them, nor the libraries)::

    sw.adapters.keras.ProgressCallback        # keras.callbacks.Callback
    sw.adapters.huggingface.ProgressCallback  # transformers.TrainerCallback
    sw.adapters.lightning.ProgressCallback    # lightning.pytorch.Callback
    sw.adapters.optuna.ProgressCallback       # a study.optimize(callbacks=[...]) callable
    sw.adapters.sklearn.ProgressCallback      # scikit-learn's (1.9+) sklearn.callback API

Each reports the library's epochs, steps or trials as levels of the stage's progress
and its logged values (loss, metrics, best value so far) through ``report``, so the
view draws their curves. On Cancel each asks the library to stop cleanly where it can
(Keras ``model.stop_training``, Hugging Face ``control.should_training_stop``,
Lightning ``trainer.should_stop``, Optuna ``study.stop()``): the training call then
returns normally with what was trained so far, and the callback's ``stopped`` is True.
scikit-learn 1.9 does not act on a callback's stop request yet, so that adapter raises
``sw.Cancelled`` in the fit instead.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["huggingface", "keras", "lightning", "optuna", "sklearn"]


def __getattr__(name: str) -> ModuleType:
    """Import an adapter module (and its library) on first use."""
    if name in __all__:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'stagewidget.adapters' has no attribute {name!r}")
