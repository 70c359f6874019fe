"""The scikit-learn adapter on the real ``sklearn.callback`` API (1.9+): levels, Cancel."""

from __future__ import annotations

import warnings

import pytest
from adapter_support import start
from conftest import WAIT_S, Gate, Recorder

import stagewidget as sw
from stagewidget import RunState, StageState
from stagewidget.status import Level

pytest.importorskip("sklearn.callback", reason="scikit-learn without its callback API (< 1.9)")
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

X, Y = load_digits(return_X_y=True)
X = X / 16.0


class BlockAt:
    """A second fit callback holding the fit at the end of one lbfgs iteration."""

    max_propagation_depth = None  # auto-propagated: a search passes it to its fits

    def __init__(self, gate: Gate, iteration: int) -> None:
        self.gate, self.iteration, self.seen = gate, iteration, 0

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context):
        if context.task_name == "lbfgs-iter":
            self.seen += 1
            if self.seen == self.iteration:
                self.gate.block()


def fit_quietly(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs stopping at max_iter says so
        return estimator.fit(X, Y)


def test_lbfgs_iterations_are_the_stage_progress(recorder: Recorder) -> None:
    gate = Gate()

    def fit(_):
        model = LogisticRegression(max_iter=40)
        model.set_callbacks(sw.adapters.sklearn.ProgressCallback(), BlockAt(gate, 5))
        return fit_quietly(model)

    run = start([fit], recorder)
    gate.wait_reached()
    mid = recorder.wait_for(lambda s: s.stages[0].done == 5)
    assert (mid.stages[0].desc, mid.stages[0].total) == ("LogisticRegression fit", 41)
    gate.open()
    model = run.result(timeout=WAIT_S)
    assert model.coef_.shape == (10, 64)
    assert run.status().stages[0].done >= 5


def test_search_tasks_nest_and_best_score_is_reported(recorder: Recorder) -> None:
    gate = Gate()

    def search(_):
        model = GridSearchCV(LogisticRegression(max_iter=20), {"C": [0.1, 1.0]}, cv=2)
        model.set_callbacks(sw.adapters.sklearn.ProgressCallback(), BlockAt(gate, 21 + 5))
        return fit_quietly(model)

    run = start([search], recorder)
    gate.wait_reached()  # iteration 5 of the second of 4 fits (20 + 1 tasks each)
    # Both levels in one snapshot: the first fit also passes its iteration 5, and a
    # sampler that catches it there shows the search at 0 of 4.
    mid = recorder.wait_for(lambda s: s.stages[0].inner[:1]
                            == (Level("GridSearchCV search", 1, 4),)
                            and s.stages[0].inner[-1:]
                            == (Level("LogisticRegression fit", 5, 21),))
    assert (mid.stages[0].desc, mid.stages[0].total) == ("GridSearchCV fit", 2)
    gate.open()
    model = run.result(timeout=WAIT_S)
    assert run.status().stages[0].metrics["best_score"] == model.best_score_


def test_cancel_raises_in_the_fit_at_the_next_task(recorder: Recorder) -> None:
    gate = Gate()
    models = []

    def fit(_):
        model = LogisticRegression(max_iter=200)
        callback = sw.adapters.sklearn.ProgressCallback()
        models.append((model, callback))
        model.set_callbacks(callback, BlockAt(gate, 3))
        return fit_quietly(model)

    run = start([fit], recorder)
    gate.wait_reached()
    run.cancel()
    gate.open()
    assert run.wait(WAIT_S)
    assert run.status().state is RunState.CANCELLED
    assert run.status().stages[0].state is StageState.CANCELLED
    model, callback = models[0]
    assert callback.stopped and not hasattr(model, "coef_")
