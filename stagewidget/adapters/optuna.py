"""Optuna: a ``study.optimize(callbacks=[...])`` callback reporting trials to the stage.

::

    def tune(data):
        study = optuna.create_study(direction="maximize")
        study.optimize(objective, n_trials=50, show_progress_bar=True,
                       callbacks=[sw.adapters.optuna.ProgressCallback()])
        return study

Each finished trial reports ``trial`` (its number), ``value`` (completed trials of a
single-objective study) and ``best_value``, and the best trial's parameters as the
message. Trials are counted as a level of the stage when ``n_trials`` is given (pass
the same as to ``optimize``); with ``show_progress_bar=True`` Optuna's own tqdm bar
is captured as the stage's progress anyway, so ``n_trials`` is not needed then.

Cancel: the callback calls ``study.stop()``: the trials running finish, ``optimize``
returns, the study keeps every finished trial. (With ``show_progress_bar=True`` the
captured bar raises ``sw.Cancelled`` at its update just after, so ``optimize`` ends
with the stage cancelled; the study object still has its trials.)
"""

from __future__ import annotations

import threading
from typing import Any

import optuna

from ..engine.progress import StageProgress
from ._base import Counter, StageLink, _count

__all__ = ["ProgressCallback"]

_MESSAGE_MAX = 120  # characters of the best trial's parameters shown as the message


class ProgressCallback:
    """Report each finished trial of an Optuna study to the running stage.

    Pass it in ``study.optimize(..., callbacks=[ProgressCallback()])``; make it inside
    the stage (or pass ``stage=``) so trials run by ``n_jobs`` threads report too.
    """

    def __init__(self, n_trials: int | None = None, *,
                 stage: StageProgress | None = None) -> None:
        self._link = StageLink(stage)
        self._lock = threading.Lock()  # n_jobs > 1 calls back from several threads
        self._n_trials = n_trials
        self._done = 0
        self._trials: Counter | None = None
        self._level()  # made in a stage: its count shows 0 out of n_trials at once

    @property
    def stopped(self) -> bool:
        """True once the callback stopped the study for a Cancel."""
        return self._link.stopped

    def __call__(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Called by Optuna after each trial, in the thread that ran it."""
        with self._lock:
            trials = self._level()
            self._done += 1
            if trials is not None:
                trials.n = self._done
                if trials.total is not None and self._done >= trials.total:
                    trials.close()
        if self._link.cancel_requested():
            self._link.stopped = True
            study.stop()
            return
        metrics: dict[str, Any] = {"trial": trial.number}
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.values is not None:
            if len(trial.values) == 1:
                metrics["value"] = trial.values[0]
            else:
                metrics.update({f"value_{i}": v for i, v in enumerate(trial.values)})
        message = None
        if len(study.directions) == 1:
            try:
                best = study.best_trial
            except ValueError:  # no completed trial yet
                best = None
            if best is not None:
                metrics["best_value"] = best.value
                params = ", ".join(f"{k}={_short(v)}" for k, v in best.params.items())
                message = f"best trial {best.number}: {params}"[:_MESSAGE_MAX]
        self._link.report(metrics, message)


    def _level(self) -> Counter | None:
        """The trials level in the current stage (a new one when the stage changed)."""
        stage = self._link.stage()
        if self._n_trials is None or stage is None:
            return None
        if self._trials is None or self._trials._progress is not stage:
            self._trials = Counter(stage, "trials", _count(self._n_trials))
            self._done = 0
        return self._trials


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
