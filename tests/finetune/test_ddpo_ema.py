"""The adapter's weight average (``ema_decay``): its arithmetic, and a run that evaluates, saves and resumes it."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionPipeline

from finetune import checkpoint as ckpt
from finetune.config import ConfigError, DDPOConfig
from finetune.ema import ParameterEMA
from finetune.lora import WEIGHT_NAME, lora_state_dict
from finetune.trainer import DDPOTrainer
from tests.finetune.ddpo_support import (
    EVAL_PROMPTS,
    PIPELINE,
    TINY,
    TRAIN_PROMPTS,
    RecordingContext,
    area,
    sandbox_pipeline_images,
)

EVAL = EVAL_PROMPTS[:2]
EMA = {**TINY, "epochs": 3, "ema_decay": 0.5}


def test_the_average_follows_the_weights_and_swaps_in_only_inside_the_block():
    param = torch.nn.Parameter(torch.tensor([0.0, 4.0]))
    ema = ParameterEMA([param], decay=0.5)
    with torch.no_grad():
        param.copy_(torch.tensor([2.0, 0.0]))
    ema.update()  # 0.5 · [0, 4] + 0.5 · [2, 0]
    with ema.applied():
        assert param.tolist() == [1.0, 2.0]
    assert param.tolist() == [2.0, 0.0]
    other = ParameterEMA([torch.nn.Parameter(torch.zeros(2))], decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.shadow[0].tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="does not match"):
        other.load_state_dict([torch.zeros(3)])


def test_a_decay_outside_zero_to_one_is_named():
    for bad in (-0.1, 1.0, "0.9"):
        with pytest.raises(ConfigError) as info:
            DDPOConfig(ema_decay=bad)
        assert info.value.field == "ema_decay"


def _trainer(ctx, output_dir=None, **overrides) -> DDPOTrainer:
    return DDPOTrainer(PIPELINE, {**EMA, **overrides}, area, TRAIN_PROMPTS, EVAL, ctx, output_dir)


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    trainer = _trainer(RecordingContext(), tmp_path_factory.mktemp("ema-adapter"))
    return trainer, trainer.train()


def test_the_saved_adapter_is_the_average_and_training_keeps_the_live_weights(ema_run):
    trainer, result = ema_run
    live = lora_state_dict(trainer.parts.unet)
    with trainer.ema.applied():
        averaged = lora_state_dict(trainer.parts.unet)
    assert any(not torch.equal(live[k], averaged[k]) for k in live)  # three epochs apart: they differ
    pipe = StableDiffusionPipeline.from_pretrained(PIPELINE)
    pipe.load_lora_weights(str(result.adapter_dir), weight_name=WEIGHT_NAME)
    seeds = [5, 6]
    with trainer.ema.applied():
        ours = trainer._sample_deterministic(EVAL, seeds)
    images = sandbox_pipeline_images(pipe, EVAL, seeds, TINY["steps"])
    assert abs(images.astype(int) - ours.astype(int)).max() <= 1


def test_resume_restores_the_average_bit_exactly(ema_run):
    straight, _ = ema_run
    ctx = RecordingContext()
    _trainer(ctx, epochs=2).train()
    state = ckpt.loads(ctx.checkpoint)
    assert state["epoch"] == 2 and state["ema"] is not None
    resumed = _trainer(RecordingContext(checkpoint=ctx.checkpoint))
    resumed.train()
    for expected, got in zip(straight.ema.state_dict(), resumed.ema.state_dict(), strict=True):
        assert torch.equal(expected, got)
    assert [e["eval_reward_mean"] for e in resumed.evals] == [e["eval_reward_mean"] for e in straight.evals]
