"""GPU throughput check for the three heavy paths of the platform, on randomly initialised models.

What it measures (one function per section, each guarded so that a failure such as an OOM is printed and the
other sections still run):

1. ``generation`` -- a ``StableDiffusionPipeline`` assembled from Stable Diffusion 1.5's exact component configs
   (UNet, VAE, CLIP text encoder) with a DDIM scheduler: images/s at 512x512, 30 steps, guidance 7.5, batch sizes
   1, 4 and 8 in fp16, plus batch 4 in bf16; peak CUDA memory per batch size.
2. ``reward`` -- a CLIP ViT-H/14-config ``CLIPModel`` trained PickScore-style on random preference pairs (bf16
   autocast, AdamW, no gradient checkpointing): pairs/s and peak memory for 16 and 32 pairs per step.
3. ``ddpo`` -- a DDPO step on the SD 1.5-config UNet (fp16 weights, fp32 LoRA rank 4 on the attention projections):
   sample 4 images with CFG over 20 DDIM steps (eta 1) recording latents and log-probs, then a PPO-style clipped
   training pass over every timestep and one AdamW step: samples/s for sampling, training and overall.

Every model is built from configs written in this file with random weights: nothing is downloaded, so it runs on an
offline machine. The CLIP tokenizer is a byte-level one written to a temp dir (single characters, no merges).
Timings use ``torch.cuda.synchronize()``, one warm-up run and the median of the timed runs.

It prints progress to stderr, then a table, then a one-line JSON summary as the last line of stdout (``--out`` also
writes the JSON to a file). It exits 1 if any section or measurement failed.

This is a manual benchmark, never part of the test suite. Run it on a CUDA machine from the repository root::

    python bench/gpu_check.py --out gpu_check.json
    python bench/gpu_check.py --sections reward --out reward.json

and check the code path anywhere (tiny models, 64x64, 1-2 steps; fp32 on CPU, fp16/bf16 on CUDA)::

    python bench/gpu_check.py --smoke
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

SECTIONS = ("generation", "reward", "ddpo")
CLIP_VOCAB_SIZE = 49408
CLIP_MAX_LENGTH = 77
PROMPTS = (
    "a photo of a cat",
    "an astronaut riding a horse on the moon, detailed oil painting",
    "a red bicycle leaning against a brick wall",
    "a bowl of ramen, studio lighting, 50mm",
)

# --------------------------------------------------------------------------------------------------------------------
# Model configs. The full ones are the real architectures; ``smoke`` variants shrink widths/depths with ``scaled`` so
# the same construction code runs in seconds on a CPU.
# --------------------------------------------------------------------------------------------------------------------

SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
}
SD15_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (128, 256, 512, 512),
    "latent_channels": 4,
    "layers_per_block": 2,
    "sample_size": 512,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
}
SD15_TEXT = {
    "vocab_size": CLIP_VOCAB_SIZE,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": CLIP_MAX_LENGTH,
    "hidden_act": "quick_gelu",
}
SD15_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "clip_sample": False,
}
# laion/CLIP-ViT-H-14 (the PickScore backbone).
CLIP_H_VISION = {
    "hidden_size": 1280,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "intermediate_size": 5120,
    "patch_size": 14,
    "image_size": 224,
    "hidden_act": "gelu",
}
CLIP_H_TEXT = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "vocab_size": CLIP_VOCAB_SIZE,
    "max_position_embeddings": CLIP_MAX_LENGTH,
    "hidden_act": "gelu",
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
}
CLIP_H_PROJECTION_DIM = 1024

# Widths divisible by 32 (GroupNorm groups); 4 blocks kept so every block type and the 8x VAE factor are exercised.
_SMOKE_UNET = {"block_out_channels": (32, 32, 64, 64), "layers_per_block": 1, "cross_attention_dim": 32}
_SMOKE_VAE = {"block_out_channels": (32, 32, 64, 64), "layers_per_block": 1, "sample_size": 64}
_SMOKE_TEXT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
_SMOKE_CLIP_VISION = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "image_size": 28,
}
_SMOKE_CLIP_TEXT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}


def scaled(config: dict[str, Any], overrides: dict[str, Any], smoke: bool) -> dict[str, Any]:
    """The full config, or (smoke) the full config with the smaller sizes in ``overrides`` applied."""
    return {**config, **overrides} if smoke else dict(config)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and repetitions for one run."""

    smoke: bool
    image_size: int
    warmup: int
    repeats: int
    gen_steps: int
    gen_batches: tuple[int, ...]
    gen_bf16_batch: int
    guidance: float
    reward_batches: tuple[int, ...]
    ddpo_batch: int
    ddpo_steps: int

    @classmethod
    def full(cls) -> Plan:
        return cls(
            smoke=False,
            image_size=512,
            warmup=1,
            repeats=3,
            gen_steps=30,
            gen_batches=(1, 4, 8),
            gen_bf16_batch=4,
            guidance=7.5,
            reward_batches=(16, 32),
            ddpo_batch=4,
            ddpo_steps=20,
        )

    @classmethod
    def tiny(cls) -> Plan:
        return cls(
            smoke=True,
            image_size=64,
            warmup=1,
            repeats=1,
            gen_steps=2,
            gen_batches=(1, 2),
            gen_bf16_batch=2,
            guidance=7.5,
            reward_batches=(2,),
            ddpo_batch=2,
            ddpo_steps=2,
        )


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[gpu_check] {message}", file=sys.stderr, flush=True)


def is_cuda(device: torch.device) -> bool:
    return device.type == "cuda"


def sync(device: torch.device) -> None:
    if is_cuda(device):
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if is_cuda(device):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    if not is_cuda(device):
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


@contextlib.contextmanager
def quiet_diffusers() -> Iterator[None]:
    """Silence diffusers' "modules that should be kept in float32" notice when casting randomly initialised models."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if is_cuda(device):
        torch.cuda.empty_cache()


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def timed_runs(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> tuple[list[float], Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; returns (wall times in seconds, last result)."""
    result = None
    for _ in range(warmup):
        result = fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times, result


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}".rstrip(": ")


def dtype_name(dtype: torch.dtype | None) -> str:
    return "fp32" if dtype is None else {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]


def build_clip_tokenizer(max_length: int = CLIP_MAX_LENGTH):
    """A byte-level ``CLIPTokenizer`` built offline: the 256 byte characters, each also with ``</w>``, no merges.

    Every word becomes one token per character, which is longer than the real BPE but has the same shapes (ids are
    < 514, so valid for the 49408-entry embedding) and pads/truncates to ``max_length``.
    """
    from transformers import CLIPTokenizer

    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    chars = [chr(c) for c in printable] + [chr(256 + i) for i in range(len(extra))]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory(prefix="gpu_check_tok_") as tmp:
        with open(os.path.join(tmp, "vocab.json"), "w", encoding="utf-8") as fh:
            json.dump({tok: i for i, tok in enumerate(tokens)}, fh)
        with open(os.path.join(tmp, "merges.txt"), "w", encoding="utf-8") as fh:
            fh.write("#version: 0.2\n")
        tokenizer = CLIPTokenizer.from_pretrained(tmp, model_max_length=max_length)
    ids = tokenizer(PROMPTS[0], padding="max_length", max_length=max_length, truncation=True).input_ids
    if len(ids) != max_length or max(ids) >= CLIP_VOCAB_SIZE:
        raise RuntimeError(f"offline tokenizer is broken: {len(ids)} ids, max id {max(ids)}")
    return tokenizer


def build_sd15(device: torch.device, dtype: torch.dtype, smoke: bool):
    """SD 1.5 components with random weights on ``device`` in ``dtype``.

    Returns (unet, vae, text_encoder, tokenizer, scheduler).
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    text_cfg = scaled(SD15_TEXT, _SMOKE_TEXT, smoke)
    unet_cfg = scaled(SD15_UNET, _SMOKE_UNET, smoke)
    unet_cfg["cross_attention_dim"] = text_cfg["hidden_size"]
    vae_cfg = scaled(SD15_VAE, _SMOKE_VAE, smoke)
    latent_factor = 2 ** (len(vae_cfg["block_out_channels"]) - 1)
    unet_cfg["sample_size"] = vae_cfg["sample_size"] // latent_factor
    with torch.device(device):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
    with quiet_diffusers():
        for module in (unet, vae, text_encoder):
            module.to(dtype=dtype).eval().requires_grad_(False)
    scheduler = DDIMScheduler(**SD15_SCHEDULER)
    return unet, vae, text_encoder, build_clip_tokenizer(), scheduler


def build_sd15_pipeline(device: torch.device, dtype: torch.dtype, smoke: bool):
    """A ``StableDiffusionPipeline`` of :func:`build_sd15`'s components (no safety checker)."""
    from diffusers import StableDiffusionPipeline

    unet, vae, text_encoder, tokenizer, scheduler = build_sd15(device, dtype, smoke)
    with quiet_diffusers():
        return StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )


def count_params(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------------------------------------------------
# 1. Generation
# --------------------------------------------------------------------------------------------------------------------


def bench_generation(device: torch.device, plan: Plan, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """images/s and peak memory of ``StableDiffusionPipeline`` (SD 1.5 configs, DDIM) per batch size and dtype.

    ``dtype`` of the main rows defaults to fp16 on CUDA, fp32 elsewhere; the extra row is always bf16.
    """

    dtype = dtype or (torch.float16 if is_cuda(device) else torch.float32)
    log(f"generation: building SD 1.5 components ({dtype_name(dtype)})")
    pipe = build_sd15_pipeline(device, dtype, plan.smoke)
    pipe.set_progress_bar_config(disable=True)
    result: dict[str, Any] = {
        "resolution": plan.image_size,
        "steps": plan.gen_steps,
        "guidance_scale": plan.guidance,
        "scheduler": "DDIM",
        "unet_params_m": round(count_params(pipe.unet) / 1e6, 1),
        "rows": [],
    }
    runs = [(dtype, b) for b in plan.gen_batches] + [(torch.bfloat16, plan.gen_bf16_batch)]
    for run_dtype, batch in runs:
        row: dict[str, Any] = {"dtype": dtype_name(run_dtype), "batch": batch}
        try:
            if pipe.unet.dtype != run_dtype:
                with quiet_diffusers():
                    pipe.to(dtype=run_dtype)
            generator = torch.Generator(device=device).manual_seed(0)
            prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]

            def generate(prompts: list[str] = prompts, generator: torch.Generator = generator) -> Any:
                return pipe(
                    prompt=prompts,
                    height=plan.image_size,
                    width=plan.image_size,
                    num_inference_steps=plan.gen_steps,
                    guidance_scale=plan.guidance,
                    generator=generator,
                    output_type="np",
                ).images

            reset_peak(device)
            log(f"generation: {row['dtype']} batch {batch}")
            times, images = timed_runs(generate, device, plan.warmup, plan.repeats)
            latency = statistics.median(times)
            if tuple(images.shape) != (batch, plan.image_size, plan.image_size, 3):
                raise RuntimeError(f"unexpected output shape {tuple(images.shape)}")
            row.update(
                images_per_s=round(batch / latency, 3),
                latency_s=round(latency, 3),
                peak_mem_gib=peak_gib(device),
                finite=bool(torch.isfinite(torch.from_numpy(images)).all()),
            )
        except Exception as exc:  # one failed batch size (e.g. OOM) must not end the section
            row["error"] = error_text(exc)
            log(f"generation: {row['dtype']} batch {batch} failed: {row['error']}")
        result["rows"].append(row)
        free_memory(device)
    return result


# --------------------------------------------------------------------------------------------------------------------
# 2. Reward model (PickScore-style training step)
# --------------------------------------------------------------------------------------------------------------------


def build_clip_h(device: torch.device, smoke: bool) -> torch.nn.Module:
    """A ViT-H/14-config ``CLIPModel`` with random fp32 weights (smoke: a tiny one)."""
    from transformers import CLIPConfig, CLIPModel

    vision = scaled(CLIP_H_VISION, _SMOKE_CLIP_VISION, smoke)
    text = scaled(CLIP_H_TEXT, _SMOKE_CLIP_TEXT, smoke)
    projection_dim = 32 if smoke else CLIP_H_PROJECTION_DIM
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
    with torch.device(device):
        model = CLIPModel(config)
    return model


PICKSCORE_LABELS = ((1.0, 0.0), (0.0, 1.0), (0.5, 0.5))


def random_preference_batch(
    pairs: int, image_size: int, device: torch.device, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Random pairs: 2*pairs images (a's then b's), pairs prompts (BOS, random ids, EOS, EOS padding) and labels."""
    pixel_values = torch.randn(2 * pairs, 3, image_size, image_size, generator=generator)
    lengths = torch.randint(4, CLIP_MAX_LENGTH - 1, (pairs,), generator=generator)
    input_ids = torch.full((pairs, CLIP_MAX_LENGTH), 49407, dtype=torch.long)
    attention_mask = torch.zeros((pairs, CLIP_MAX_LENGTH), dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        input_ids[i, 0] = 49406
        input_ids[i, 1 : n - 1] = torch.randint(0, 49406, (n - 2,), generator=generator)
        attention_mask[i, :n] = 1
    choice = torch.randint(0, len(PICKSCORE_LABELS), (pairs,), generator=generator)
    labels = torch.tensor(PICKSCORE_LABELS)[choice]
    batch = {"pixel_values": pixel_values, "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def pickscore_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """PickScore objective: s = logit_scale.exp() * cos(text, image) for both images, CE of softmax([s_a, s_b])."""
    out = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=batch["pixel_values"]
    )
    text = out.text_embeds  # already L2-normalised by CLIPModel.forward
    image_a, image_b = out.image_embeds.chunk(2)
    scale = model.logit_scale.exp()
    logits = torch.stack([scale * (text * image_a).sum(-1), scale * (text * image_b).sum(-1)], dim=-1)
    return F.cross_entropy(logits.float(), batch["labels"])  # soft targets: (1,0), (0,1), (0.5,0.5)


def reward_train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    amp_dtype: torch.dtype | None,
) -> torch.Tensor:
    """One PickScore training step (forward under autocast, backward, optimizer step). Returns the detached loss."""
    optimizer.zero_grad(set_to_none=True)
    with autocast(batch["pixel_values"].device, amp_dtype):
        loss = pickscore_loss(model, batch)
    loss.backward()
    optimizer.step()
    return loss.detach()


def bench_reward(
    device: torch.device,
    plan: Plan,
    model: torch.nn.Module | None = None,
    batch_sizes: tuple[int, ...] | None = None,
    amp_dtype: torch.dtype | None | str = "auto",
) -> dict[str, Any]:
    """pairs/s and peak memory of PickScore-style training steps.

    Pass ``model`` to measure another CLIPModel (trained in place), ``batch_sizes`` for other pair counts,
    ``amp_dtype`` (None: no autocast) to override bf16-autocast-on-CUDA / fp32-elsewhere.
    """
    if amp_dtype == "auto":
        amp_dtype = torch.bfloat16 if is_cuda(device) else None
    if model is None:
        log("reward: building CLIP ViT-H/14-config model (fp32 weights)")
        model = build_clip_h(device, plan.smoke)
    model.train().requires_grad_(True)
    checkpointing = getattr(model, "is_activation_checkpointing", None)  # transformers >= 5.x name
    if checkpointing is None:
        checkpointing = getattr(model, "is_gradient_checkpointing", False)
    if checkpointing:
        disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
        disable()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-6, weight_decay=0.2)
    image_size = model.config.vision_config.image_size
    generator = torch.Generator().manual_seed(0)
    result: dict[str, Any] = {
        "model_params_m": round(count_params(model) / 1e6, 1),
        "image_size": image_size,
        "autocast": dtype_name(amp_dtype) if amp_dtype else "off",
        "optimizer": "AdamW",
        "gradient_checkpointing": False,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "rows": [],
    }
    for pairs in batch_sizes or plan.reward_batches:
        row: dict[str, Any] = {"pairs_per_step": pairs}
        try:
            batch = random_preference_batch(pairs, image_size, device, generator)

            def step(batch: dict[str, torch.Tensor] = batch) -> torch.Tensor:
                return reward_train_step(model, optimizer, batch, amp_dtype)

            reset_peak(device)
            log(f"reward: {pairs} pairs/step")
            times, loss = timed_runs(step, device, plan.warmup, plan.repeats)
            latency = statistics.median(times)
            row.update(
                pairs_per_s=round(pairs / latency, 2),
                step_s=round(latency, 3),
                peak_mem_gib=peak_gib(device),
                loss=round(float(loss), 4),
            )
        except Exception as exc:  # e.g. OOM at the larger batch; keep the smaller one's numbers
            row["error"] = error_text(exc)
            log(f"reward: {pairs} pairs failed: {row['error']}")
        optimizer.zero_grad(set_to_none=True)
        result["rows"].append(row)
        free_memory(device)
    return result


# --------------------------------------------------------------------------------------------------------------------
# 3. DDPO step
# --------------------------------------------------------------------------------------------------------------------


def ddim_step_with_logprob(
    scheduler,
    model_output: torch.Tensor,
    timestep: int,
    sample: torch.Tensor,
    eta: float = 1.0,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DDIM step x_t -> x_{t-1} with eta noise, and the per-sample Gaussian log-prob of x_{t-1} (DDPO-style).

    ``prev_sample`` given: its log-prob under the mean predicted from ``model_output`` (training); otherwise one is
    sampled (rollout). Log-prob is averaged over all non-batch dims. Works in fp32.
    """
    model_output = model_output.float()
    sample = sample.float()
    step_size = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    prev_timestep = timestep - step_size
    alphas = scheduler.alphas_cumprod
    alpha_t = float(alphas[timestep])
    alpha_prev = float(alphas[prev_timestep]) if prev_timestep >= 0 else float(scheduler.final_alpha_cumprod)
    beta_t = 1.0 - alpha_t
    variance = ((1.0 - alpha_prev) / beta_t) * (1.0 - alpha_t / alpha_prev)
    std = eta * math.sqrt(variance)
    pred_original = (sample - math.sqrt(beta_t) * model_output) / math.sqrt(alpha_t)
    direction = math.sqrt(max(1.0 - alpha_prev - std**2, 0.0)) * model_output
    mean = math.sqrt(alpha_prev) * pred_original + direction
    if prev_sample is None:
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        prev_sample = mean + std * noise
    log_prob = -((prev_sample.detach() - mean) ** 2) / (2 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)
    return prev_sample, log_prob.mean(dim=tuple(range(1, log_prob.ndim)))


def bench_ddpo(
    device: torch.device,
    plan: Plan,
    clip_range: float = 1e-4,
    weight_dtype: torch.dtype | None = None,
    amp_dtype: torch.dtype | None | str = "auto",
) -> dict[str, Any]:
    """samples/s of a DDPO iteration: CFG rollout recording latents/log-probs, then a LoRA PPO pass over all steps.

    Base weights and autocast default to fp16 on CUDA and fp32 (no autocast) elsewhere; LoRA weights are fp32.
    """
    from peft import LoraConfig

    weight_dtype = weight_dtype or (torch.float16 if is_cuda(device) else torch.float32)
    if amp_dtype == "auto":
        amp_dtype = torch.float16 if is_cuda(device) else None
    log(f"ddpo: building SD 1.5 UNet ({dtype_name(weight_dtype)}) + fp32 LoRA")
    unet, vae, text_encoder, tokenizer, scheduler = build_sd15(device, weight_dtype, plan.smoke)
    del vae
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    lora_params = [p for p in unet.parameters() if p.requires_grad]
    for p in lora_params:
        p.data = p.data.float()  # peft creates them in the base layer's dtype; train them in fp32
    unet.train()
    optimizer = torch.optim.AdamW(lora_params, lr=3e-4, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    scheduler.set_timesteps(plan.ddpo_steps, device=device)
    timesteps = [int(t) for t in scheduler.timesteps]
    batch = plan.ddpo_batch
    latent_size = plan.image_size // 2 ** (len(unet.config.block_out_channels) - 1)
    latent_shape = (batch, unet.config.in_channels, latent_size, latent_size)
    generator = torch.Generator(device=device).manual_seed(0)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]

    def encode(texts: list[str]) -> torch.Tensor:
        ids = tokenizer(
            texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(device)
        return text_encoder(ids)[0]

    def unet_cfg(latents: torch.Tensor, t: int, embeds: torch.Tensor) -> torch.Tensor:
        model_in = scheduler.scale_model_input(torch.cat([latents, latents]), t).to(weight_dtype)
        with autocast(device, amp_dtype):
            noise_uncond, noise_text = unet(model_in, t, encoder_hidden_states=embeds).sample.chunk(2)
        return noise_uncond + plan.guidance * (noise_text - noise_uncond)

    def sample() -> dict[str, Any]:
        with torch.no_grad():
            embeds = torch.cat([encode([""] * batch), encode(prompts)])
            latents = torch.randn(latent_shape, generator=generator, device=device)
            all_latents, all_log_probs = [latents], []
            for t in timesteps:
                noise_pred = unet_cfg(latents, t, embeds)
                latents, log_prob = ddim_step_with_logprob(scheduler, noise_pred, t, latents, generator=generator)
                all_latents.append(latents)
                all_log_probs.append(log_prob)
        advantages = torch.randn(batch, generator=generator, device=device)  # stands in for normalised rewards
        return {"embeds": embeds, "latents": all_latents, "log_probs": all_log_probs, "advantages": advantages}

    def train(rollout: dict[str, Any]) -> float:
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        for j, t in enumerate(timesteps):
            noise_pred = unet_cfg(rollout["latents"][j], t, rollout["embeds"])
            _, log_prob = ddim_step_with_logprob(
                scheduler, noise_pred, t, rollout["latents"][j], prev_sample=rollout["latents"][j + 1]
            )
            ratio = torch.exp(log_prob - rollout["log_probs"][j])
            adv = rollout["advantages"]
            loss = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean()
            scaler.scale(loss / len(timesteps)).backward()
            total += loss.detach()  # no .item() per step: keep the GPU queue full
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(lora_params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        return float(total) / len(timesteps)

    sample_times, train_times, peaks_sample, peaks_train, losses = [], [], [], [], []
    for i in range(plan.warmup + plan.repeats):
        log(f"ddpo: iteration {i + 1}/{plan.warmup + plan.repeats}{' (warm-up)' if i < plan.warmup else ''}")
        reset_peak(device)
        start = time.perf_counter()
        rollout = sample()
        sync(device)
        t_sample = time.perf_counter() - start
        peak_s = peak_gib(device)
        reset_peak(device)
        start = time.perf_counter()
        losses.append(train(rollout))
        sync(device)
        t_train = time.perf_counter() - start
        peak_t = peak_gib(device)
        del rollout
        if i >= plan.warmup:
            sample_times.append(t_sample)
            train_times.append(t_train)
            peaks_sample.append(peak_s)
            peaks_train.append(peak_t)
    t_s, t_t = statistics.median(sample_times), statistics.median(train_times)
    t_all = statistics.median(s + t for s, t in zip(sample_times, train_times, strict=True))
    return {
        "batch": batch,
        "resolution": plan.image_size,
        "steps": plan.ddpo_steps,
        "eta": 1.0,
        "guidance_scale": plan.guidance,
        "weights": dtype_name(weight_dtype),
        "autocast": dtype_name(amp_dtype) if amp_dtype else "off",
        "lora": {
            "rank": 4,
            "alpha": 4,
            "trainable_params": sum(p.numel() for p in lora_params),
            "dtype": dtype_name(lora_params[0].dtype),
            "base_dtype": dtype_name(unet.conv_in.weight.dtype),
        },
        "sampling_samples_per_s": round(batch / t_s, 3),
        "training_samples_per_s": round(batch / t_t, 3),
        "overall_samples_per_s": round(batch / t_all, 3),
        "sampling_s": round(t_s, 3),
        "training_s": round(t_t, 3),
        "overall_s": round(t_all, 3),
        "peak_mem_sampling_gib": None if peaks_sample[0] is None else max(peaks_sample),
        "peak_mem_training_gib": None if peaks_train[0] is None else max(peaks_train),
        "loss": round(losses[-1], 6),
        "finite": bool(math.isfinite(losses[-1])),
    }


# --------------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def render_table(summary: dict[str, Any]) -> str:
    meta = summary["meta"]
    lines = [
        f"gpu_check  device={meta['device']} ({meta['device_name']})  torch {meta['torch']}  "
        f"diffusers {meta['diffusers']}  transformers {meta['transformers']}  peft {meta['peft']}"
        f"{'  [SMOKE: tiny models]' if meta['smoke'] else ''}",
    ]
    gen = summary.get("generation")
    if gen is not None:
        lines.append("")
        if "error" in gen:
            lines.append(f"generation: FAILED {gen['error']}")
        else:
            lines.append(
                f"generation  SD1.5 UNet {gen['unet_params_m']}M  {gen['resolution']}px  {gen['steps']} DDIM steps  "
                f"cfg {gen['guidance_scale']}"
            )
            lines.append(f"  {'dtype':<6}{'batch':>6}{'images/s':>10}{'latency s':>11}{'peak GiB':>10}  finite")
            for row in gen["rows"]:
                if "error" in row:
                    lines.append(f"  {row['dtype']:<6}{row['batch']:>6}  FAILED {row['error']}")
                else:
                    lines.append(
                        f"  {row['dtype']:<6}{row['batch']:>6}{row['images_per_s']:>10}{row['latency_s']:>11}"
                        f"{_fmt(row['peak_mem_gib']):>10}  {row['finite']}"
                    )
    reward = summary.get("reward")
    if reward is not None:
        lines.append("")
        if "error" in reward:
            lines.append(f"reward: FAILED {reward['error']}")
        else:
            lines.append(
                f"reward  CLIP-H-config {reward['model_params_m']}M  {reward['image_size']}px  "
                f"autocast {reward['autocast']}  AdamW  no grad checkpointing"
            )
            lines.append(f"  {'pairs':>6}{'pairs/s':>10}{'step s':>9}{'peak GiB':>10}{'loss':>9}")
            for row in reward["rows"]:
                if "error" in row:
                    lines.append(f"  {row['pairs_per_step']:>6}  FAILED {row['error']}")
                else:
                    lines.append(
                        f"  {row['pairs_per_step']:>6}{row['pairs_per_s']:>10}{row['step_s']:>9}"
                        f"{_fmt(row['peak_mem_gib']):>10}{row['loss']:>9}"
                    )
    ddpo = summary.get("ddpo")
    if ddpo is not None:
        lines.append("")
        if "error" in ddpo:
            lines.append(f"ddpo: FAILED {ddpo['error']}")
        else:
            lines.append(
                f"ddpo  batch {ddpo['batch']}  {ddpo['resolution']}px  {ddpo['steps']} DDIM steps eta 1  "
                f"weights {ddpo['weights']} + fp32 LoRA r{ddpo['lora']['rank']}  autocast {ddpo['autocast']}"
            )
            lines.append(f"  {'phase':<9}{'samples/s':>10}{'time s':>9}{'peak GiB':>10}")
            lines.append(
                f"  {'sampling':<9}{ddpo['sampling_samples_per_s']:>10}{ddpo['sampling_s']:>9}"
                f"{_fmt(ddpo['peak_mem_sampling_gib']):>10}"
            )
            lines.append(
                f"  {'training':<9}{ddpo['training_samples_per_s']:>10}{ddpo['training_s']:>9}"
                f"{_fmt(ddpo['peak_mem_training_gib']):>10}"
            )
            lines.append(f"  {'overall':<9}{ddpo['overall_samples_per_s']:>10}{ddpo['overall_s']:>9}")
    return "\n".join(lines)


def environment(device: torch.device, smoke: bool) -> dict[str, Any]:
    import diffusers
    import peft
    import transformers

    meta: dict[str, Any] = {
        "device": str(device),
        "device_name": "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "python": sys.version.split()[0],
        "smoke": smoke,
    }
    if is_cuda(device):
        props = torch.cuda.get_device_properties(device)
        meta.update(device_name=torch.cuda.get_device_name(device), device_mem_gib=round(props.total_memory / 2**30, 1))
    return meta


def any_failed(summary: dict[str, Any]) -> bool:
    for name in SECTIONS:
        section = summary.get(name)
        if section and ("error" in section or any("error" in row for row in section.get("rows", []))):
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    parser.add_argument("--smoke", action="store_true", help="tiny models, 64x64, 1-2 steps (checks the code path)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, cpu for --smoke)")
    parser.add_argument("--out", default=None, help="also write the JSON summary to this file")
    args = parser.parse_args(argv)

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu"))
    if not args.smoke and not is_cuda(device):
        parser.error("full sizes need a CUDA device; pass --smoke to check the code path on CPU")
    if is_cuda(device) and device.index is not None:
        torch.cuda.set_device(device)
    plan = Plan.tiny() if args.smoke else Plan.full()
    torch.manual_seed(0)

    summary: dict[str, Any] = {"meta": environment(device, args.smoke)}
    benches = {"generation": bench_generation, "reward": bench_reward, "ddpo": bench_ddpo}
    for name in SECTIONS:
        if name not in sections:
            continue
        start = time.perf_counter()
        try:
            summary[name] = benches[name](device, plan)
        except Exception as exc:  # a failed section (OOM, missing kernel) must not stop the others
            traceback.print_exc(file=sys.stderr)
            summary[name] = {"error": error_text(exc)}
            log(f"{name}: FAILED {summary[name]['error']}")
        summary[name]["section_s"] = round(time.perf_counter() - start, 1)
        free_memory(device)

    print(render_table(summary))
    line = json.dumps(summary, sort_keys=False)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(summary, indent=2) + "\n")
    print(line, flush=True)
    return 1 if any_failed(summary) else 0


if __name__ == "__main__":
    sys.exit(main())
