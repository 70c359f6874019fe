"""The Hugging Face adapter on a real ``Trainer`` (tiny model, CPU): steps, logs, Cancel.

Marked ``torch``: PyTorch is not installed by scripts/setup, so CI here skips these;
run them where torch and transformers are (``pytest --run-torch tests/adapters``).
"""

from __future__ import annotations

import pytest
from adapter_support import cancel_at_the_gate, start, then
from conftest import WAIT_S, Gate, Recorder

import stagewidget as sw
from stagewidget import StageState

pytestmark = pytest.mark.torch

ROWS, BATCH, EPOCHS = 16, 4, 3
STEPS = ROWS // BATCH * EPOCHS


def trainer_parts(tmp_path, gate: Gate | None, block_at: int, *, disable_tqdm: bool,
                  epochs: int = EPOCHS):
    import torch
    import transformers

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)

        def forward(self, x, labels=None):
            out = self.linear(x).squeeze(-1)
            loss = torch.nn.functional.mse_loss(out, labels)
            return {"loss": loss, "logits": out}

    class Rows(torch.utils.data.Dataset):
        def __init__(self) -> None:
            g = torch.Generator().manual_seed(0)
            self.x = torch.randn(ROWS, 4, generator=g)
            self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i):
            return {"x": self.x[i], "labels": self.y[i]}

    class Block(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if gate is not None and state.global_step == block_at:
                gate.block()

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=BATCH, num_train_epochs=epochs,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
        disable_tqdm=disable_tqdm, learning_rate=0.05)
    torch.manual_seed(0)
    return Tiny(), args, Rows(), Block()


@pytest.mark.parametrize("disable_tqdm", [True, False])
def test_steps_are_the_stage_progress_and_logs_are_charted(
        tmp_path, recorder: Recorder, disable_tqdm: bool) -> None:
    import transformers

    gate = Gate()
    model, args, rows, block = trainer_parts(tmp_path, gate, 5, disable_tqdm=disable_tqdm)

    def train(_):
        trainer = transformers.Trainer(
            model=model, args=args, train_dataset=rows,
            callbacks=[sw.adapters.huggingface.ProgressCallback(), block])
        return trainer.train()

    run = start([train], recorder)
    gate.wait_reached()
    # the Trainer's own bar (captured) moves after the callbacks given: one step behind
    seen = 5 if disable_tqdm else 4
    mid = recorder.wait_for(lambda s: s.stages[0].done == seen)
    assert mid.stages[0].total == STEPS
    assert mid.stages[0].desc == ("step" if disable_tqdm else None)
    assert "loss" in mid.stages[0].metrics
    gate.open()
    output = run.result(timeout=WAIT_S)
    stage = run.status().stages[0]
    assert stage.state is StageState.SUCCEEDED and output.global_step == STEPS
    assert len(stage.history["loss"]) == STEPS
    assert stage.metrics["epoch"] == EPOCHS


def test_cancel_stops_training_cleanly(tmp_path, recorder: Recorder) -> None:
    import transformers

    gate = Gate()
    model, args, rows, block = trainer_parts(tmp_path, gate, 4, disable_tqdm=True, epochs=50)
    callback = sw.adapters.huggingface.ProgressCallback()
    initial = model.linear.weight.detach().clone()

    def train(_):
        trainer = transformers.Trainer(model=model, args=args, train_dataset=rows,
                                       callbacks=[block, callback])
        return trainer.train()  # returns normally after the clean stop

    run = cancel_at_the_gate([train, then], recorder, gate)
    assert callback.stopped
    assert run.retry().result(timeout=WAIT_S).global_step == 4  # stopped at step 4
    assert not model.linear.weight.detach().equal(initial)
