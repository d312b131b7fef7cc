"""Seeded training of the flow sandbox (a tiny SD3) on the shapes world, with the first sandbox's VAE.

Usage::

    python -m generators.sandbox.flow_train --out generators/sandbox/weights --threads 1

Rectified-flow loss as SD3 trains it: x_σ = (1 − σ)·x₀ + σ·ε, the transformer predicts ε − x₀, σ drawn
logit-normal and shifted by the scheduler's shift; the three text encoders train jointly with the transformer,
captions dropped to "" 10% of the time for classifier-free guidance; EMA weights are saved.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, StableDiffusion3Pipeline
from transformers import CLIPTokenizer, T5TokenizerFast

from . import FLOW_PIPELINE_PATH, flow_models
from .dataset import SandboxDataset
from .tokenizer import build_tokenizer
from .train import UNCONDITIONAL_PROMPT, ema_update, encode_latents, log, lr_lambda, to_tensor, tokenize

FLOW_PIPELINE_DIR = FLOW_PIPELINE_PATH.name


class FlowTextEncoders(torch.nn.Module):
    """SD3's three text encoders, combined as ``StableDiffusion3Pipeline.encode_prompt`` combines them."""

    def __init__(self, clip_tokenizer: CLIPTokenizer, t5_tokenizer: T5TokenizerFast) -> None:
        super().__init__()
        self.clip_l = flow_models.build_flow_text_encoder(clip_tokenizer)
        self.clip_g = flow_models.build_flow_text_encoder(clip_tokenizer)
        self.t5 = flow_models.build_t5_encoder(t5_tokenizer)

    def forward(self, clip_ids: torch.Tensor, t5_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prompt_embeds, pooled_projections)``: penultimate CLIP states side by side, then the T5 tokens."""
        first = self.clip_l(clip_ids, output_hidden_states=True)
        second = self.clip_g(clip_ids, output_hidden_states=True)
        clip = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
        t5 = self.t5(t5_ids)[0]
        clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        return torch.cat([clip, t5], dim=-2), torch.cat([first.text_embeds, second.text_embeds], dim=-1)


def t5_ids(tokenizer: T5TokenizerFast, captions: list[str]) -> torch.Tensor:
    """T5 token ids padded to the pipeline's ``max_sequence_length`` for the flow sandbox."""
    return tokenizer(
        captions,
        padding="max_length",
        max_length=flow_models.MAX_SEQUENCE_LENGTH,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def sample_sigmas(count: int, scheduler, generator: torch.Generator) -> torch.Tensor:
    """σ of ``count`` training examples: logit-normal u (SD3's default density), shifted as the scheduler samples."""
    u = torch.sigmoid(torch.randn(count, generator=generator))
    shift = scheduler.config.shift
    return shift * u / (1 + (shift - 1) * u)


def train_flow(
    vae: AutoencoderKL,
    clip_tokenizer: CLIPTokenizer,
    t5_tokenizer: T5TokenizerFast,
    images: torch.Tensor,
    captions: list[str],
    steps: int,
    batch: int,
    seed: int,
    drop_prob: float = 0.1,
) -> tuple[torch.nn.Module, FlowTextEncoders]:
    """Flow-matching training of the transformer and text encoders; returns their EMA copies."""
    torch.manual_seed(seed)
    transformer = flow_models.build_transformer()
    encoders = FlowTextEncoders(clip_tokenizer, t5_tokenizer)
    scheduler = flow_models.build_flow_scheduler()
    mean, std = encode_latents(vae, images)
    scale, shift = vae.config.scaling_factor, vae.config.shift_factor or 0.0
    clip_all, t5_all = tokenize(clip_tokenizer, captions), t5_ids(t5_tokenizer, captions)
    clip_empty, t5_empty = tokenize(clip_tokenizer, [UNCONDITIONAL_PROMPT])[0], t5_ids(t5_tokenizer, [""])[0]
    params = list(transformer.parameters()) + list(encoders.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(200, steps))
    ema_transformer, ema_encoders = copy.deepcopy(transformer).eval(), copy.deepcopy(encoders).eval()
    generator = torch.Generator().manual_seed(seed)
    start = time.time()
    for step in range(1, steps + 1):
        idx = torch.randint(len(images), (batch,), generator=generator)
        latents = ((mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=generator)) - shift) * scale
        clip_ids, t5 = clip_all[idx].clone(), t5_all[idx].clone()
        dropped = torch.rand(batch, generator=generator) < drop_prob
        clip_ids[dropped], t5[dropped] = clip_empty, t5_empty
        noise = torch.randn(latents.shape, generator=generator)
        sigmas = sample_sigmas(batch, scheduler, generator)
        noisy = (1 - sigmas.view(-1, 1, 1, 1)) * latents + sigmas.view(-1, 1, 1, 1) * noise
        prompt_embeds, pooled = encoders(clip_ids, t5)
        prediction = transformer(
            hidden_states=noisy,
            timestep=sigmas * scheduler.config.num_train_timesteps,
            encoder_hidden_states=prompt_embeds,
            pooled_projections=pooled,
        ).sample
        loss = (prediction - (noise - latents)).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        decay = min(0.999, (1 + step) / (10 + step))
        ema_update(ema_transformer, transformer, decay)
        ema_update(ema_encoders, encoders, decay)
        if step % 200 == 0 or step == steps:
            log("flow", step, steps, loss.item(), start)
    return ema_transformer, ema_encoders


def flow_pipeline(
    vae: AutoencoderKL,
    transformer: torch.nn.Module,
    encoders: FlowTextEncoders,
    clip_tokenizer: CLIPTokenizer,
    t5_tokenizer: T5TokenizerFast,
) -> StableDiffusion3Pipeline:
    """The trained parts as a ``StableDiffusion3Pipeline``."""
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=flow_models.build_flow_scheduler(),
        vae=flow_models.flow_vae(vae),
        text_encoder=encoders.clip_l,
        tokenizer=clip_tokenizer,
        text_encoder_2=encoders.clip_g,
        tokenizer_2=clip_tokenizer,
        text_encoder_3=encoders.t5,
        tokenizer_3=t5_tokenizer,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dataset-size", type=int, default=16384)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=32)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    images_np, samples = SandboxDataset(args.dataset_size, seed=args.seed).arrays()
    out = args.out / FLOW_PIPELINE_DIR
    clip_tokenizer = build_tokenizer(out / "tokenizer")
    t5_tokenizer = flow_models.build_t5_tokenizer()
    vae = AutoencoderKL.from_pretrained(args.out / "pipeline" / "vae").eval()
    transformer, encoders = train_flow(
        vae,
        clip_tokenizer,
        t5_tokenizer,
        to_tensor(images_np),
        [s.caption for s in samples],
        args.steps,
        args.batch,
        args.seed,
    )
    flow_pipeline(vae, transformer, encoders, clip_tokenizer, t5_tokenizer).save_pretrained(
        out, safe_serialization=True
    )
    report = {"threads": args.threads, "seed": args.seed, "steps": args.steps, "minutes": (time.time() - started) / 60}
    print(json.dumps(report, indent=2), flush=True)
    (args.out / "train_report_flow.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
