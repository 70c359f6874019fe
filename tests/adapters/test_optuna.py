"""The Optuna adapter on real Optuna studies: trials counted, values charted, Cancel."""

from __future__ import annotations

import pytest
from adapter_support import cancel_at_the_gate, start, then
from conftest import WAIT_S, Gate, Recorder

import stagewidget as sw
from stagewidget import RunState, StageState

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(optuna.logging.WARNING)


def quadratic(trial):
    x = trial.suggest_float("x", -10, 10)
    return (x - 2) ** 2


def test_trials_are_counted_and_best_value_charted(recorder: Recorder) -> None:
    gate = Gate()
    studies = []

    def tune(_):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        studies.append(study)

        def objective(trial):
            if trial.number == 5:
                gate.block()  # trials 0-4 are reported; the view must show them
            return quadratic(trial)

        study.optimize(objective, n_trials=12,
                       callbacks=[sw.adapters.optuna.ProgressCallback(n_trials=12)])
        return study.best_value

    run = start([tune], recorder)
    gate.wait_reached()
    mid = recorder.wait_for(lambda s: s.stages[0].done == 5)
    assert (mid.stages[0].total, mid.stages[0].desc) == (12, "trials")
    assert mid.stages[0].metrics["trial"] == 4
    gate.open()
    best = run.result(timeout=WAIT_S)
    stage = run.status().stages[0]
    assert (stage.state, stage.done, stage.total) == (StageState.SUCCEEDED, 12, 12)
    assert stage.metrics["best_value"] == best == studies[0].best_value
    assert len(stage.history["value"]) == 12
    assert stage.history["best_value"] == tuple(sorted(stage.history["best_value"],
                                                       reverse=True))
    assert stage.message.startswith(f"best trial {studies[0].best_trial.number}: x=")


def test_cancel_stops_the_study_after_the_running_trial(recorder: Recorder) -> None:
    gate = Gate()
    seen = {}

    def tune(_):
        study = optuna.create_study()
        callback = sw.adapters.optuna.ProgressCallback(n_trials=50)
        seen.update(study=study, callback=callback)

        def objective(trial):
            if trial.number == 3:
                gate.block()
            return quadratic(trial)

        study.optimize(objective, n_trials=50, callbacks=[callback])
        return study  # optimize returned normally: the study is the stage's result

    cancel_at_the_gate([tune, then], recorder, gate)
    study = seen["study"]
    assert len(study.trials) == 4  # trial 3 finished, no trial started after the Cancel
    assert all(t.state is optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert seen["callback"].stopped


def test_cancel_with_optuna_progress_bar_ends_the_stage_cancelled(recorder: Recorder) -> None:
    gate = Gate()
    studies = []

    def tune(_):
        study = optuna.create_study()
        studies.append(study)

        def objective(trial):
            if trial.number == 3:
                gate.block()
            return quadratic(trial)

        study.optimize(objective, n_trials=50, show_progress_bar=True,
                       callbacks=[sw.adapters.optuna.ProgressCallback()])
        return study

    run = start([tune], recorder)
    gate.wait_reached()
    mid = recorder.wait_for(lambda s: s.stages[0].done == 3)
    assert mid.stages[0].total == 50  # Optuna's own tqdm bar, captured, is the count
    run.cancel()
    gate.open()
    assert run.wait(WAIT_S)
    assert run.status().state is RunState.CANCELLED
    assert run.status().stages[0].state is StageState.CANCELLED
    assert len(studies[0].trials) == 4
    assert studies[0].best_trial.number in range(4)


def test_trials_in_optuna_threads_report_to_the_stage(recorder: Recorder) -> None:
    def tune(_):
        study = optuna.create_study()
        study.optimize(quadratic, n_trials=16, n_jobs=4,
                       callbacks=[sw.adapters.optuna.ProgressCallback(n_trials=16)])
        return study.best_value

    run = start([tune], recorder)
    best = run.result(timeout=WAIT_S)
    stage = run.status().stages[0]
    assert (stage.done, stage.total) == (16, 16)
    assert stage.metrics["best_value"] == best


def test_callback_outside_a_run_does_nothing() -> None:
    study = optuna.create_study()
    callback = sw.adapters.optuna.ProgressCallback(n_trials=3)
    study.optimize(quadratic, n_trials=3, callbacks=[callback])
    assert len(study.trials) == 3 and not callback.stopped


def test_a_callback_made_outside_the_run_counts_in_each_run_it_is_used_in(
        recorder: Recorder) -> None:
    callback = sw.adapters.optuna.ProgressCallback(n_trials=4)  # made in no stage

    def tune(_):
        study = optuna.create_study()
        study.optimize(quadratic, n_trials=4, callbacks=[callback])
        return study.best_value

    for _ in range(2):  # the same callback in two runs: each counts its own trials
        run = start([tune], recorder)
        best = run.result(timeout=WAIT_S)
        stage = run.status().stages[0]
        assert (stage.done, stage.total, stage.desc) == (4, 4, "trials")
        assert stage.metrics["best_value"] == best
