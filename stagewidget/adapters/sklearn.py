"""scikit-learn: a callback for the (experimental) ``sklearn.callback`` API of 1.9+.

::

    search = GridSearchCV(LogisticRegression(), grid)
    search.set_callbacks(sw.adapters.sklearn.ProgressCallback())
    search.fit(X, y)

scikit-learn 1.9 calls fit callbacks from the estimators that support them
(``LogisticRegression`` with the lbfgs solver, ``Pipeline``, ``GridSearchCV``,
``RandomizedSearchCV``, ``StandardScaler``; others ignore ``set_callbacks``). Each task
with subtasks (a search's fits, a pipeline's steps, lbfgs iterations) becomes a level of
the stage's progress, nested as scikit-learn nests them; a search reports
``best_score`` when it ends. The callback propagates to sub-estimators (a meta-estimator
passes it down); ``max_propagation_depth`` limits how deep.

Cancel: scikit-learn 1.9 does not act on a callback's request to stop yet (its
``on_fit_task_end`` return value is ignored), so the callback raises ``sw.Cancelled``
at the next task boundary: the fit is aborted and the estimator keeps no fitted state
from it. Tasks run in worker processes (``n_jobs`` with the loky or multiprocessing
backends) are not counted: the callback travels there without its stage.
"""

from __future__ import annotations

from typing import Any

from ..engine.progress import StageProgress
from ._base import Counter, StageLink

__all__ = ["ProgressCallback"]


class ProgressCallback:
    """Show a scikit-learn fit's tasks as levels of the running stage; cancel at tasks.

    Follows the ``sklearn.callback.FitCallback`` and ``AutoPropagatedCallback``
    protocols: pass it to ``estimator.set_callbacks(...)``.
    """

    def __init__(self, *, max_propagation_depth: int | None = None,
                 stage: StageProgress | None = None) -> None:
        self.max_propagation_depth = max_propagation_depth
        self._link = StageLink(stage)
        self._levels: dict[int, Counter] = {}  # id(task context) -> its level

    def __getstate__(self) -> dict[str, Any]:
        # a worker process gets the callback without the stage (not picklable, not there)
        return {"max_propagation_depth": self.max_propagation_depth}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(max_propagation_depth=state["max_propagation_depth"],  # type: ignore[misc]
                      stage=None)

    def setup(self, estimator: Any, context: Any) -> None:
        """Before the outermost fit: nothing to prepare."""
        self._link.stage()  # bind to the stage of the fit's thread

    def on_fit_task_begin(self, estimator: Any, context: Any, **_: Any) -> None:
        """A task starts: a level for it if it has subtasks; cancel raises here."""
        self._link.check_cancel()
        if context.max_subtasks != 0 and id(context) not in self._levels:
            desc = f"{context.estimator_name} {context.task_name}".strip()
            counter = self._link.counter(desc, context.max_subtasks)
            if counter is not None:
                self._levels[id(context)] = counter

    def on_fit_task_end(self, estimator: Any, context: Any, **_: Any) -> bool:
        """A task ended: close its level, count it in its parent's; cancel raises here."""
        counter = self._levels.pop(id(context), None)
        if counter is not None:
            counter.close()
        parent = self._levels.get(id(context.parent)) if context.parent is not None else None
        if parent is not None:
            parent.n += 1
        if context.parent is None:
            best = getattr(estimator, "best_score_", None)
            if best is not None:
                self._link.report({"best_score": best})
        self._link.check_cancel()
        return False

    def teardown(self, estimator: Any, context: Any) -> None:
        """After the outermost fit (also when it raised): leave every level."""
        for counter in self._levels.values():
            counter.close()
        self._levels.clear()

    @property
    def stopped(self) -> bool:
        """True once the callback raised ``Cancelled`` in the fit."""
        return self._link.stopped
