"""Seeded training of the sandbox world: VAE, then UNet + text encoder, then CLIP.

Usage::

    python -m generators.sandbox.train --out generators/sandbox/weights --threads 1
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, StableDiffusionPipeline
from transformers import CLIPModel, CLIPProcessor, CLIPTokenizer

from . import models
from .dataset import SIZE_WORDS, Sample, SandboxDataset, all_captions, make_caption, parse_caption
from .tokenizer import build_tokenizer

UNCONDITIONAL_PROMPT = ""


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def lr_lambda(warmup: int, total: int):
    """Linear warm-up then cosine decay to 10% of the peak learning rate."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def log(stage: str, step: int, total: int, loss: float, start: float) -> None:
    print(f"[{stage}] step {step}/{total} loss {loss:.5f} ({(time.time() - start) / 60:.1f} min)", flush=True)


def train_vae(images: torch.Tensor, steps: int, batch: int, seed: int) -> AutoencoderKL:
    """Reconstruction (MSE) + tiny KL; then set the latent scaling factor to 1/std."""
    torch.manual_seed(seed)
    vae = models.build_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(100, steps))
    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    for step in range(1, steps + 1):
        x = images[torch.randint(len(images), (batch,), generator=gen)]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        loss = F.mse_loss(recon, x) + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps:
            log("vae", step, steps, loss.item(), start)
    vae.eval()
    with torch.no_grad():
        latents = torch.cat([vae.encode(c).latent_dist.mean for c in images[:2048].split(256)])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    return vae


def encode_latents(vae: AutoencoderKL, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image (the UNet samples from them each batch)."""
    means, stds = [], []
    with torch.no_grad():
        for chunk in images.split(256):
            dist = vae.encode(chunk).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


def tokenize(tokenizer: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(
        captions,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.lerp_(p, 1.0 - decay)


def train_unet(
    vae: AutoencoderKL,
    tokenizer: CLIPTokenizer,
    images: torch.Tensor,
    captions: list[str],
    steps: int,
    batch: int,
    seed: int,
    drop_prob: float = 0.1,
    checkpoint: Callable[[torch.nn.Module, torch.nn.Module], None] | None = None,
    checkpoint_every: int = 1000,
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Epsilon-prediction loss (min-SNR-5 weighted), caption dropout for CFG; returns the EMA models."""
    torch.manual_seed(seed)
    unet = models.build_unet()
    text_encoder = models.build_text_encoder(tokenizer)
    noise_scheduler = models.build_train_scheduler()
    mean, std = encode_latents(vae, images)
    scale = vae.config.scaling_factor
    ids = tokenize(tokenizer, captions)
    empty = tokenize(tokenizer, [UNCONDITIONAL_PROMPT])[0]
    alphas = noise_scheduler.alphas_cumprod
    snr = alphas / (1 - alphas)
    weights = torch.clamp(snr, max=5.0) / snr
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(200, steps))
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    for step in range(1, steps + 1):
        idx = torch.randint(len(images), (batch,), generator=gen)
        latents = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scale
        input_ids = ids[idx].clone()
        input_ids[torch.rand(batch, generator=gen) < drop_prob] = empty
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,), generator=gen)
        noisy = noise_scheduler.add_noise(latents, noise, t)
        hidden = text_encoder(input_ids).last_hidden_state
        pred = unet(noisy, t, encoder_hidden_states=hidden).sample
        loss = (weights[t] * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        decay = min(0.999, (1 + step) / (10 + step))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_text, text_encoder, decay)
        if step % 200 == 0 or step == steps:
            log("unet", step, steps, loss.item(), start)
        if checkpoint is not None and step % checkpoint_every == 0 and step < steps:
            checkpoint(ema_unet, ema_text)
    return ema_unet, ema_text


def compatibility(samples: list[Sample], captions: list[str]) -> torch.Tensor:
    """1 where the caption truly describes the image (colour, shape, and size if given), else 0."""
    parsed = [parse_caption(c) for c in captions]
    rows = [
        [
            float(p.colour == s.colour and p.shape == s.shape and (p.size is None or p.size == s.size_class))
            for p in parsed
        ]
        for s in samples
    ]
    return torch.tensor(rows)


def clip_pixels(images: np.ndarray) -> torch.Tensor:
    """Same normalisation as the saved CLIPImageProcessor (32x32 input needs no resize)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(models.CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(models.CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def train_clip(
    tokenizer: CLIPTokenizer, images: np.ndarray, samples: list[Sample], steps: int, batch: int, seed: int
) -> CLIPModel:
    """Contrastive training; several captions in a batch can be correct, so targets are multi-positive."""
    torch.manual_seed(seed)
    clip = models.build_clip(tokenizer)
    pixels = clip_pixels(images)
    captions = [s.caption for s in samples]
    ids = tokenize(tokenizer, captions)
    opt = torch.optim.AdamW(clip.parameters(), lr=1e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(100, steps))
    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    for step in range(1, steps + 1):
        idx = torch.randint(len(samples), (batch,), generator=gen)
        chosen = [samples[i] for i in idx.tolist()]
        target = compatibility(chosen, [captions[i] for i in idx.tolist()])
        out = clip(input_ids=ids[idx], pixel_values=pixels[idx])
        logits = out.logits_per_image
        loss_i = -(F.log_softmax(logits, dim=1) * target / target.sum(1, keepdim=True)).sum(1).mean()
        loss_t = -(F.log_softmax(logits.T, dim=1) * target.T / target.T.sum(1, keepdim=True)).sum(1).mean()
        loss = (loss_i + loss_t) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps:
            log("clip", step, steps, loss.item(), start)
    return clip.eval()


@torch.no_grad()
def clip_retrieval_accuracy(clip: CLIPModel, tokenizer: CLIPTokenizer, n: int = 1000, seed: int = 12345) -> dict:
    """Top-1 accuracy of picking the right caption among all colour x shape captions on held-out images."""
    images, samples = SandboxDataset(n, seed=seed).arrays()
    candidates = all_captions()
    text = clip.get_text_features(input_ids=tokenize(tokenizer, candidates))
    image = clip.get_image_features(pixel_values=clip_pixels(images))
    text, image = _features(text), _features(image)
    best = (F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T).argmax(dim=1)
    hits = [parse_caption(candidates[b]) for b in best.tolist()]
    colour = np.mean([h.colour == s.colour for h, s in zip(hits, samples, strict=True)])
    shape = np.mean([h.shape == s.shape for h, s in zip(hits, samples, strict=True)])
    both = np.mean([h.colour == s.colour and h.shape == s.shape for h, s in zip(hits, samples, strict=True)])
    sized = [make_sized_pair(s) for s in samples if s.size_class in SIZE_WORDS]
    size_acc = _size_accuracy(clip, tokenizer, sized)
    return {
        "top1": float(both),
        "colour": float(colour),
        "shape": float(shape),
        "size_pair": size_acc,
        "chance": 1 / len(candidates),
    }


def make_sized_pair(sample: Sample) -> tuple[np.ndarray, str, str]:
    """(image, right size caption, wrong size caption) for a small or large sample."""
    other = "large" if sample.size_class == "small" else "small"
    right = make_caption(sample.colour, sample.shape, sample.size_class)
    return sample.image, right, make_caption(sample.colour, sample.shape, other)


def _size_accuracy(clip: CLIPModel, tokenizer: CLIPTokenizer, pairs: list[tuple[np.ndarray, str, str]]) -> float:
    if not pairs:
        return float("nan")
    pixels = clip_pixels(np.stack([p[0] for p in pairs]))
    right = tokenize(tokenizer, [p[1] for p in pairs])
    wrong = tokenize(tokenizer, [p[2] for p in pairs])
    image = F.normalize(_features(clip.get_image_features(pixel_values=pixels)), dim=-1)
    r = F.normalize(_features(clip.get_text_features(input_ids=right)), dim=-1)
    w = F.normalize(_features(clip.get_text_features(input_ids=wrong)), dim=-1)
    return float(((image * r).sum(-1) > (image * w).sum(-1)).float().mean())


def _features(output) -> torch.Tensor:
    return getattr(output, "pooler_output", output)


def save_pipeline(out: Path, vae, text_encoder, tokenizer, unet) -> None:
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=models.build_inference_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stages", default="vae,unet,clip", help="comma-separated subset of vae,unet,clip")
    parser.add_argument("--dataset-size", type=int, default=16384)
    parser.add_argument("--vae-steps", type=int, default=600)
    parser.add_argument("--vae-batch", type=int, default=32)
    parser.add_argument("--unet-steps", type=int, default=6000)
    parser.add_argument("--unet-batch", type=int, default=32)
    parser.add_argument("--clip-steps", type=int, default=1000)
    parser.add_argument("--clip-batch", type=int, default=128)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    stages = set(args.stages.split(","))
    pipe_dir, clip_dir = args.out / "pipeline", args.out / "clip"
    report: dict = {"threads": args.threads, "seed": args.seed, "minutes": {}}
    started = time.time()
    images_np, samples = SandboxDataset(args.dataset_size, seed=args.seed).arrays()
    images = to_tensor(images_np)
    tokenizer = build_tokenizer(pipe_dir / "tokenizer")
    print(f"dataset of {len(samples)} images in {time.time() - started:.1f}s", flush=True)

    if "vae" in stages:
        t0 = time.time()
        vae = train_vae(images, args.vae_steps, args.vae_batch, args.seed)
        vae.save_pretrained(pipe_dir / "vae", safe_serialization=True)
        report["minutes"]["vae"] = (time.time() - t0) / 60
    if "unet" in stages:
        t0 = time.time()
        vae = AutoencoderKL.from_pretrained(pipe_dir / "vae").eval()
        captions = [s.caption for s in samples]

        def checkpoint(unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
            save_pipeline(pipe_dir, vae, text_encoder, tokenizer, unet)

        unet, text_encoder = train_unet(
            vae,
            tokenizer,
            images,
            captions,
            args.unet_steps,
            args.unet_batch,
            args.seed,
            checkpoint=checkpoint,
        )
        save_pipeline(pipe_dir, vae, text_encoder, tokenizer, unet)
        report["minutes"]["unet"] = (time.time() - t0) / 60
    if "clip" in stages:
        t0 = time.time()
        clip_tokenizer = build_tokenizer(clip_dir)
        clip = train_clip(clip_tokenizer, images_np, samples, args.clip_steps, args.clip_batch, args.seed)
        clip.save_pretrained(clip_dir, safe_serialization=True)
        CLIPProcessor(image_processor=models.build_image_processor(), tokenizer=clip_tokenizer).save_pretrained(
            clip_dir
        )
        report["minutes"]["clip"] = (time.time() - t0) / 60
        report["clip_retrieval"] = clip_retrieval_accuracy(CLIPModel.from_pretrained(clip_dir).eval(), clip_tokenizer)
    report["minutes"]["total"] = (time.time() - started) / 60
    print(json.dumps(report, indent=2), flush=True)
    (args.out / f"train_report_{'_'.join(sorted(stages))}.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
