"""The Lightning adapter on a real ``Trainer.fit`` (tiny model, CPU): epochs, Cancel.

Marked ``torch``: PyTorch is not installed by scripts/setup, so CI here skips these;
run them where torch and lightning are (``pytest --run-torch tests/adapters``).
"""

from __future__ import annotations

import pytest
from adapter_support import cancel_at_the_gate, start, then
from conftest import WAIT_S, Gate, Recorder

import stagewidget as sw
from stagewidget.status import Level

pytestmark = pytest.mark.torch

ROWS, BATCH, EPOCHS = 32, 4, 3
STEPS = ROWS // BATCH


def parts(gate: Gate | None, epoch: int, batch: int):
    import torch
    from lightning import pytorch as L

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    class Block(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, data, batch_idx):
            if gate is not None and (trainer.current_epoch, batch_idx) == (epoch, batch):
                gate.block()

    g = torch.Generator().manual_seed(0)
    x = torch.randn(ROWS, 4, generator=g)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, x @ torch.tensor([1.0, -2.0, 0.5, 3.0])),
        batch_size=BATCH)
    torch.manual_seed(0)
    return L, Tiny(), data, Block()


def trainer(L, callbacks, epochs: int, bar: str):
    bars = {"none": [], "tqdm": [L.callbacks.TQDMProgressBar()],
            "rich": [L.callbacks.RichProgressBar()]}[bar]
    return L.Trainer(max_epochs=epochs, callbacks=callbacks + bars, accelerator="cpu",
                     enable_progress_bar=bar != "none", enable_checkpointing=False, logger=False,
                     enable_model_summary=False, log_every_n_steps=1)


@pytest.mark.parametrize("bar", ["none", "tqdm", "rich"])
def test_epochs_and_steps_are_levels_and_metrics_charted(recorder: Recorder,
                                                         bar: str) -> None:
    gate = Gate()
    L, model, data, block = parts(gate, 1, 2)

    def train(_):
        fit = trainer(L, [sw.adapters.lightning.ProgressCallback(), block], EPOCHS, bar)
        fit.fit(model, data)
        return fit.current_epoch

    run = start([train], recorder)
    gate.wait_reached()
    mid = recorder.wait_for(lambda s: s.stages[0].inner[-1:] == (Level("step", 3, STEPS),))
    if bar == "tqdm":  # Lightning's tqdm bar is captured (it made no output) as a level
        assert [(level.desc, level.total) for level in mid.stages[0].inner[:-1]] \
            == [("Epoch 1", STEPS)]
    assert (mid.stages[0].desc, mid.stages[0].done, mid.stages[0].total) == ("epoch", 1, EPOCHS)
    assert "train_loss" in mid.stages[0].metrics
    gate.open()
    assert run.result(timeout=WAIT_S) == EPOCHS
    stage = run.status().stages[0]
    assert (stage.done, stage.total) == (EPOCHS, EPOCHS)
    assert len(stage.history["train_loss"]) >= EPOCHS * STEPS


def test_cancel_sets_should_stop_and_fit_returns(recorder: Recorder) -> None:
    gate = Gate()
    L, model, data, block = parts(gate, 1, 2)
    callback = sw.adapters.lightning.ProgressCallback()
    initial = model.linear.weight.detach().clone()

    def train(_):
        fit = trainer(L, [block, callback], 50, "none")
        fit.fit(model, data)  # returns normally after the clean stop
        return fit.global_step

    run = cancel_at_the_gate([train, then], recorder, gate)
    assert callback.stopped
    assert run.retry().result(timeout=WAIT_S) == STEPS + 3  # stopped at epoch 1, batch 2
    assert not model.linear.weight.detach().equal(initial)
