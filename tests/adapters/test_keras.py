"""The Keras adapter on a real Keras 3 ``fit`` (JAX backend, CPU): levels, logs, Cancel."""

from __future__ import annotations

import os

import numpy as np
import pytest
from adapter_support import cancel_at_the_gate, start, then
from conftest import WAIT_S, Gate, Recorder

import stagewidget as sw
from stagewidget import StageState
from stagewidget.status import Level

os.environ.setdefault("KERAS_BACKEND", "jax")  # read when keras is first imported
keras = pytest.importorskip("keras")

EPOCHS, STEPS, BATCH = 4, 8, 16


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * BATCH, 4)).astype("float32")
    return x, x @ np.array([1.0, -2.0, 0.5, 3.0], dtype="float32")


def model():
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    net.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return net


def blocker(gate: Gate, epoch: int, batch: int):
    """A callback after the adapter's that holds ``fit`` at one batch end."""
    where = {}
    return keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: where.update(epoch=e),
        on_train_batch_end=lambda b, logs: gate.block()
        if (where["epoch"], b) == (epoch, batch) else None)


def test_epochs_and_steps_are_levels_and_logs_are_charted(recorder: Recorder) -> None:
    gate = Gate()
    x, y = data()

    def train(_):
        net = model()
        history = net.fit(x, y, batch_size=BATCH, epochs=EPOCHS, validation_split=0.25,
                          verbose=0, callbacks=[sw.adapters.keras.ProgressCallback(),
                                                blocker(gate, 1, 2)])
        return history.history

    run = start([train], recorder)
    gate.wait_reached()
    # held at epoch 1's third step (epoch 0's third step may have been sampled too)
    mid = recorder.wait_for(lambda s: s.stages[0].done == 1
                            and s.stages[0].inner[-1:] == (Level("step", 3, 6),))
    stage = mid.stages[0]
    assert (stage.desc, stage.done, stage.total) == ("epoch", 1, EPOCHS)
    assert stage.metrics["epoch"] == 1 and "val_loss" in stage.metrics
    gate.open()
    history = run.result(timeout=WAIT_S)
    stage = run.status().stages[0]
    assert (stage.state, stage.done, stage.total) == (StageState.SUCCEEDED, EPOCHS, EPOCHS)
    assert stage.inner == ()
    assert stage.metrics["val_loss"] == pytest.approx(history["val_loss"][-1])
    assert len(stage.history["loss"]) == EPOCHS * 6 + EPOCHS  # every batch, every epoch
    assert len(stage.history["val_loss"]) == EPOCHS
    assert history["loss"][-1] < history["loss"][0]


def test_cancel_stops_fit_at_the_next_batch_keeping_the_weights(recorder: Recorder) -> None:
    gate = Gate()
    x, y = data()
    seen = {}

    def train(_):
        net = model()
        callback = sw.adapters.keras.ProgressCallback()
        seen.update(net=net, callback=callback, initial=net.get_weights())
        history = net.fit(x, y, batch_size=BATCH, epochs=50, verbose=0,
                          callbacks=[callback, blocker(gate, 1, 2)])
        seen["history"] = history.history
        return net  # fit returned normally: the trained model is the stage's result

    run = cancel_at_the_gate([train, then], recorder, gate)
    assert seen["callback"].stopped
    assert len(seen["history"]["loss"]) == 2  # epoch 1 ended at its 4th batch, no epoch 2
    assert not np.allclose(seen["net"].get_weights()[0], seen["initial"][0])
    retried = run.retry()  # goes on from the next stage with the trained model
    assert retried.result(timeout=WAIT_S) is seen["net"]
