"""Flow-GRPO on a tiny random FLUX.1 (``FluxPipeline``, CPU): the trainer picks FluxComponents, the on-policy ratio,
exact resume, the adapter in a plain ``FluxPipeline`` (which also shows that noise-0 sampling is the pipeline's
own sampler), the KL reference, and the flow SDE on packed latents."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

from finetune import checkpoint as ckpt
from finetune.flow_logprob import sde_step_with_logprob
from finetune.flux_sampling import FluxComponents
from finetune.lora import WEIGHT_NAME, adapter_disabled, lora_state_dict
from finetune.trainer import DDPOTrainer
from generators.pipeline import max_sequence_length
from generators.sandbox import FLOW_PIPELINE_PATH
from tests.finetune.ddpo_support import EVAL_PROMPTS, TINY, TRAIN_PROMPTS, RecordingContext, area

EVAL = EVAL_PROMPTS[:4]
SIZE = 32  # pixels: 8×8 latents of the sandbox VAE, packed into 4×4 tokens of 16 channels
GUIDANCE = 3.5  # FLUX.1-dev's default: the guidance embedding's input
# Each trained timestep in its own forward pass, of the train batch's size (the sampling batch's): the stacked pass
# (timesteps_per_forward 0) is a larger matrix product, whose float32 sums this CPU rounds differently (~1e-6).
FLUX_TINY = {**TINY, "height": SIZE, "width": SIZE, "guidance_scale": GUIDANCE, "timesteps_per_forward": 1}


@pytest.fixture(scope="module")
def flux_folder(tmp_path_factory):
    """A tiny FluxPipeline saved with ``save_pretrained``: the flow sandbox's tokenizers, CLIP (its pooled output),
    T5 and VAE (with a shift factor, as FLUX's has), a random one-block FLUX transformer with a guidance embedding,
    and FLUX.1's scheduler (resolution-dependent shift)."""
    weights = FLOW_PIPELINE_PATH
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 VAE channels × 2×2 packing
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=64,  # the sandbox T5's width
        pooled_projection_dim=32,  # the sandbox CLIP's width
        guidance_embeds=True,
        axes_dims_rope=(2, 2, 4),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256
    )
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=AutoencoderKL.from_pretrained(weights / "vae", shift_factor=0.1),
        text_encoder=CLIPTextModel.from_pretrained(weights / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(weights / "tokenizer"),
        text_encoder_2=T5EncoderModel.from_pretrained(weights / "text_encoder_3"),
        tokenizer_2=T5TokenizerFast.from_pretrained(weights / "tokenizer_3"),
        transformer=transformer,
    )
    folder = tmp_path_factory.mktemp("tiny-flux")
    pipe.save_pretrained(folder)
    return str(folder)


def _plain_pipeline(folder: str) -> FluxPipeline:
    pipe = FluxPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _trainer(folder: str, ctx, output_dir=None, **overrides) -> DDPOTrainer:
    return DDPOTrainer(folder, {**FLUX_TINY, **overrides}, area, TRAIN_PROMPTS, EVAL, ctx, output_dir)


@pytest.fixture(scope="module")
def straight_run(flux_folder, tmp_path_factory):
    ctx = RecordingContext()
    trainer = _trainer(flux_folder, ctx, tmp_path_factory.mktemp("flux-adapter"))
    return trainer, trainer.train(), ctx


def test_a_flux_pipeline_trains_with_flow_grpo_on_its_transformer(straight_run):
    trainer, result, ctx = straight_run
    assert isinstance(trainer.parts, FluxComponents) and trainer.algorithm == "flow_grpo"
    assert result.summary["algorithm"] == "flow_grpo"
    assert type(trainer.parts.denoiser).__name__ == "FluxTransformer2DModel"
    assert trainer.parts.max_sequence_length == 16  # the sandbox T5's own length, not FLUX's 512
    assert trainer.negative_embeds is None  # one guided pass: no unconditional branch
    keys = {k for _, values in ctx.metrics for k in values}
    assert {"reward_mean", "approx_kl", "clip_fraction", "kl_to_base", "eval_reward_mean"} <= keys
    assert all(np.isfinite(h["loss"]) for h in result.summary["history"])


def test_trajectories_hold_packed_latents(straight_run):
    trainer, _, _ = straight_run
    pixels, trajectories = trainer.parts.sample(EVAL[:2], [0, 1], 3, GUIDANCE, 0.7, (SIZE, 2 * SIZE))
    assert pixels.shape == (2, SIZE, 2 * SIZE, 3)
    assert trajectories.latents.shape == (2, 4, 4 * 8, 16)  # (B, T + 1, 4×8 tokens, 4 channels × 2×2)
    assert trajectories.log_probs.shape == (2, 3) and torch.isfinite(trajectories.log_probs).all()
    assert trajectories.pooled_embeds.shape == (2, 32)


def test_the_log_probs_recomputed_in_training_equal_those_recorded_while_sampling(straight_run):
    _, result, _ = straight_run
    for epoch in result.summary["history"]:  # float32 rounding aside (see test_flow_grpo.py)
        assert epoch["first_ratio_max_deviation"] <= 1e-5


def test_resume_is_bit_exact(straight_run, flux_folder):
    straight, _, _ = straight_run
    ctx = RecordingContext()
    _trainer(flux_folder, ctx, epochs=1).train()
    assert ckpt.loads(ctx.checkpoint)["epoch"] == 1
    resumed = _trainer(flux_folder, RecordingContext(checkpoint=ctx.checkpoint))
    resumed.train()
    expected, got = lora_state_dict(straight.parts.denoiser), lora_state_dict(resumed.parts.denoiser)
    assert expected.keys() == got.keys() and expected
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert [h["reward_mean"] for h in resumed.history] == [h["reward_mean"] for h in straight.history]


def test_the_adapter_reproduces_the_eval_images_in_a_plain_flux_pipeline(straight_run, flux_folder):
    trainer, result, _ = straight_run
    assert (result.adapter_dir / WEIGHT_NAME).exists()
    seeds = [3, 4]
    ours = trainer._sample_deterministic(EVAL[:2], seeds)
    pipe = _plain_pipeline(flux_folder)
    before = _pipeline_images(pipe, seeds)
    assert trainer.parts.scheduler.timesteps.tolist() == pipe.scheduler.timesteps.tolist()  # same shifted schedule
    pipe.load_lora_weights(str(result.adapter_dir))
    after = _pipeline_images(pipe, seeds)
    assert np.abs(after.astype(int) - ours.astype(int)).max() <= 1  # fp32 rounding of the same Euler steps
    assert not np.array_equal(before, after)


def _pipeline_images(pipe, seeds) -> np.ndarray:
    out = pipe(
        EVAL[:2],
        num_inference_steps=FLUX_TINY["steps"],
        guidance_scale=GUIDANCE,
        height=SIZE,
        width=SIZE,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        max_sequence_length=max_sequence_length(pipe),
        output_type="np",
    ).images
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def test_with_the_adapter_disabled_the_transformer_is_the_base_model(straight_run, flux_folder):
    trainer, _, _ = straight_run
    parts = trainer.parts
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 16, 16, generator=generator)
    cond = parts.encode(EVAL[:2])
    t = parts.scheduler.timesteps[1]
    base = _plain_pipeline(flux_folder).transformer
    with torch.no_grad():
        tuned = parts.velocity(parts.transformer, latents, t, cond, GUIDANCE)
        with adapter_disabled(parts.transformer):
            disabled = parts.velocity(parts.transformer, latents, t, cond, GUIDANCE)
        expected = parts.velocity(base, latents, t, cond, GUIDANCE)
    torch.testing.assert_close(disabled, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(tuned, expected)


def test_the_sde_step_on_packed_latents_is_the_step_on_the_unpacked_ones_rearranged():
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.1, 10), mu=0.8)
    generator = torch.Generator().manual_seed(0)
    x, velocity, drawn = (torch.randn(3, 4, 8, 6, generator=generator) for _ in range(3))

    def pack(tensor):
        return FluxPipeline._pack_latents(tensor, 3, 4, 8, 6)

    for index in (0, 5):  # σ = 1 exactly (FLUX's first step) and an inner step
        timestep = scheduler.timesteps[index]
        flat = sde_step_with_logprob(scheduler, velocity, timestep, x, prev_sample=drawn)
        packed = sde_step_with_logprob(scheduler, pack(velocity), timestep, pack(x), prev_sample=pack(drawn))
        torch.testing.assert_close(packed[2], pack(flat[2]))  # the means
        torch.testing.assert_close(packed[1], flat[1])  # the log-probs: means over the same numbers
        assert packed[1].shape == (3,) and torch.isfinite(packed[1]).all()


def test_a_whole_sde_trajectory_on_packed_latents_with_the_flux_schedule_ends_on_the_data():
    """Data x₀ ~ N(M, S²), whose exact velocity is known: the SDE (noise 0.7), run from σ = 1 on FluxComponents'
    schedule for packed (B, N, C) latents, ends on the data distribution."""
    mean_0, std_0 = 0.5, 0.3
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15)
    parts = FluxComponents(None, None, None, scheduler, torch.device("cpu"))
    parts.set_timesteps(100, tokens=16)
    assert float(scheduler.sigmas[0]) == 1.0
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(100, 16, 16, generator=generator)
    for index, timestep in enumerate(scheduler.timesteps):
        sigma = float(scheduler.sigmas[index])
        variance = (1 - sigma) ** 2 * std_0**2 + sigma**2
        centred = x - (1 - sigma) * mean_0
        velocity = sigma / variance * centred - (mean_0 + (1 - sigma) * std_0**2 / variance * centred)
        x, log_prob, _, _ = sde_step_with_logprob(scheduler, velocity, timestep, x, 0.7, generator=generator)
        assert log_prob.shape == (100,)
    assert abs(float(x.mean()) - mean_0) < 0.01 and abs(float(x.std()) / std_0 - 1) < 0.03
