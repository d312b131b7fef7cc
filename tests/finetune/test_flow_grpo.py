"""Flow-GRPO on the flow sandbox (a tiny SD3, CPU): on-policy ratio, exact resume, the adapter in a plain
``StableDiffusion3Pipeline``, the algorithm chosen from the pipeline, and learning a reward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusion3Pipeline

from finetune import checkpoint as ckpt
from finetune.config import ConfigError
from finetune.flow_sampling import FlowComponents, freeze_parts
from finetune.lora import WEIGHT_NAME, lora_state_dict
from finetune.trainer import DDPOTrainer
from generators.pipeline import max_sequence_length
from generators.sandbox import FLOW_PIPELINE_PATH
from tests.finetune.ddpo_support import EVAL_PROMPTS, PIPELINE, TINY, TRAIN_PROMPTS, RecordingContext, area

FLOW = str(FLOW_PIPELINE_PATH)
EVAL = EVAL_PROMPTS[:4]


def _trainer(ctx, output_dir=None, reward=area, **overrides) -> DDPOTrainer:
    return DDPOTrainer(FLOW, {**TINY, **overrides}, reward, TRAIN_PROMPTS, EVAL, ctx, output_dir)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    ctx = RecordingContext()
    trainer = _trainer(ctx, tmp_path_factory.mktemp("flow-adapter"))
    return trainer, trainer.train(), ctx


def test_a_flow_pipeline_trains_with_flow_grpo_on_its_transformer(straight_run):
    trainer, result, ctx = straight_run
    assert isinstance(trainer.parts, FlowComponents) and trainer.algorithm == "flow_grpo"
    assert result.summary["algorithm"] == "flow_grpo"
    assert type(trainer.parts.denoiser).__name__ == "SD3Transformer2DModel"
    assert trainer.parts.max_sequence_length == 16  # the sandbox T5's own length, not SD3's 256
    keys = {k for _, values in ctx.metrics for k in values}
    assert {"reward_mean", "approx_kl", "clip_fraction", "kl_to_base", "eval_reward_mean"} <= keys


def test_the_log_probs_recomputed_in_training_equal_those_recorded_while_sampling(straight_run):
    _, result, _ = straight_run
    # Equal up to float32 rounding: training recomputes the recorded steps stacked in one larger batch, which some
    # CPUs' kernels round differently from the sampling batch (1.2e-6 seen; a real mismatch is orders larger).
    for epoch in result.summary["history"]:
        assert epoch["first_ratio_max_deviation"] <= 1e-5


def test_resume_is_bit_exact(straight_run):
    straight, _, _ = straight_run
    ctx = RecordingContext()
    _trainer(ctx, epochs=1).train()
    assert ckpt.loads(ctx.checkpoint)["epoch"] == 1
    resumed = _trainer(RecordingContext(checkpoint=ctx.checkpoint))
    resumed.train()
    expected, got = lora_state_dict(straight.parts.denoiser), lora_state_dict(resumed.parts.denoiser)
    assert expected.keys() == got.keys() and expected
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert [h["reward_mean"] for h in resumed.history] == [h["reward_mean"] for h in straight.history]


def test_the_adapter_reproduces_the_eval_images_in_a_plain_sd3_pipeline(straight_run):
    trainer, result, _ = straight_run
    assert (result.adapter_dir / WEIGHT_NAME).exists()
    seeds = [3, 4]
    ours = trainer._sample_deterministic(EVAL[:2], seeds)
    pipe = StableDiffusion3Pipeline.from_pretrained(FLOW)
    pipe.set_progress_bar_config(disable=True)
    before = _pipeline_images(pipe, seeds)
    pipe.load_lora_weights(str(result.adapter_dir))
    after = _pipeline_images(pipe, seeds)
    assert np.abs(after.astype(int) - ours.astype(int)).max() <= 1  # fp32 rounding of the same Euler steps
    assert not np.array_equal(before, after)


def _pipeline_images(pipe, seeds) -> np.ndarray:
    out = pipe(
        EVAL[:2],
        num_inference_steps=TINY["steps"],
        guidance_scale=5.0,
        height=32,
        width=32,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        max_sequence_length=max_sequence_length(pipe),
        output_type="np",
    ).images
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def test_an_algorithm_that_does_not_fit_the_pipeline_is_named():
    with pytest.raises(ConfigError, match="^algorithm: ddpo does not fit StableDiffusion3Pipeline"):
        _trainer(RecordingContext(), algorithm="ddpo")
    with pytest.raises(ConfigError, match="^algorithm: flow_grpo does not fit StableDiffusionPipeline"):
        DDPOTrainer(PIPELINE, {**TINY, "algorithm": "flow_grpo"}, area, TRAIN_PROMPTS, EVAL, RecordingContext())
    with pytest.raises(ConfigError, match="^noise_level"):
        _trainer(RecordingContext(), noise_level=0.0)


def test_a_flow_pipeline_it_does_not_drive_is_named():
    pipe = StableDiffusion3Pipeline.from_pretrained(FLOW)
    pipe.__class__ = type("FluxPipeline", (StableDiffusion3Pipeline,), {})  # a flow model of another class
    with pytest.raises(ConfigError, match="^algorithm: Flow-GRPO here drives StableDiffusion3Pipeline.*FluxPipeline"):
        DDPOTrainer(pipe, TINY, area, TRAIN_PROMPTS, EVAL, RecordingContext())


def test_both_flow_models_take_their_parts_frozen_in_eval_mode():
    pipe = StableDiffusion3Pipeline.from_pretrained(FLOW)
    pipe.transformer.train()
    pipe.vae.requires_grad_(True)
    parts = FlowComponents.from_pipeline(pipe, "cpu")
    for name in ("text_encoder", "text_encoder_2", "text_encoder_3", "vae", "transformer"):
        module = getattr(pipe, name)
        if module is None:
            continue
        assert not module.training, name
        assert not any(p.requires_grad for p in module.parameters()), name
        assert {p.device.type for p in module.parameters()} == {"cpu"}, name
    assert parts.device == torch.device("cpu")
    pipe.text_encoder_3 = None  # a part the pipeline lacks is passed over
    assert freeze_parts(pipe, ("text_encoder_3", "vae"), "cpu") == torch.device("cpu")
