"""Sampling with a Stable Diffusion pipeline's parts, recording what DDPO trains on.

:func:`sample` runs DDIM with classifier-free guidance, one ``torch.Generator`` per sample (so a sample depends
on its own seed only, never on its batch), and returns the decoded images with the trajectory: latents at every
step, the timesteps and the log-probability of every step. ``eta=0`` gives deterministic sampling for
evaluation (its log-probs are zero).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .ddim_logprob import ddim_mean_std, ddim_step_with_logprob, gaussian_log_prob


class LatentParts:
    """What every kind of parts shares (they have ``vae``, ``device`` and ``autocast_dtype``): mixed precision,
    the VAE's downscale factor and decoding final latents to pixels."""

    vae: torch.nn.Module
    device: torch.device
    autocast_dtype: torch.dtype | None

    def autocast(self):
        """Mixed-precision context for forward passes (a no-op in full precision)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def latent_factor(self) -> int:
        """Pixels per latent cell along a side."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


@dataclass
class Components(LatentParts):
    """The pipeline parts DDPO uses; ``unet`` carries the LoRA adapter."""

    tokenizer: object
    text_encoder: torch.nn.Module
    unet: torch.nn.Module
    vae: torch.nn.Module
    scheduler: object
    device: torch.device
    autocast_dtype: torch.dtype | None = None  # fp16/bf16 on CUDA, None for full precision
    family = "ddim"  # what the trainer calls this kind of parts (finetune.flow_sampling's are "flow")

    @classmethod
    def from_pipeline(cls, pipe, device: str | torch.device, autocast_dtype: torch.dtype | None = None) -> Components:
        """Take the parts of a diffusers ``StableDiffusionPipeline``; the scheduler becomes DDIM if it is not."""
        from diffusers import DDIMScheduler

        scheduler = pipe.scheduler
        if not isinstance(scheduler, DDIMScheduler):
            scheduler = DDIMScheduler.from_config(scheduler.config)
        device = torch.device(device)
        for module in (pipe.text_encoder, pipe.vae, pipe.unet):
            module.to(device)
            module.requires_grad_(False)
            module.eval()
        return cls(pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae, scheduler, device, autocast_dtype)

    def default_size(self) -> tuple[int, int]:
        """(height, width) in pixels the UNet was built for."""
        factor = self.latent_factor()
        size = self.unet.config.sample_size
        return (size * factor, size * factor) if isinstance(size, int) else (size[0] * factor, size[1] * factor)

    @property
    def denoiser(self) -> torch.nn.Module:
        """The module the LoRA adapter goes on (the UNet)."""
        return self.unet

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        return encode_prompts(self, prompts)

    def negative(self) -> torch.Tensor:
        """The empty prompt's embeddings (the unconditional branch of guidance)."""
        return encode_prompts(self, [""])

    def sample(self, prompts, seeds, steps, guidance_scale, noise, size=None, negative=None):
        """:func:`sample` with DDIM's η as the ``noise``."""
        return sample(self, prompts, seeds, steps, guidance_scale, noise, size, negative)

    def transition(
        self,
        model: torch.nn.Module,
        batch: Trajectories,
        owner: torch.Tensor,
        positions: torch.Tensor,
        negative: torch.Tensor,
        guidance_scale: float,
        noise: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_prob, mean, std)`` of the recorded DDIM steps ``positions`` of trajectories ``owner`` under
        ``model`` (η = ``noise``)."""
        x_t, x_prev = batch.latents[owner, positions], batch.latents[owner, positions + 1]
        t = batch.timesteps[positions]
        embeds = batch.prompt_embeds[owner]
        with self.autocast():
            noise_pred = guided_noise(model, x_t, t, embeds, negative.expand(len(owner), -1, -1), guidance_scale)
        mean, std = ddim_mean_std(self.scheduler, noise_pred, t, x_t, noise)
        return gaussian_log_prob(x_prev, mean, std), mean, std


@dataclass
class Trajectories:
    """Recorded sampling of B samples over T steps."""

    latents: torch.Tensor  # (B, T + 1, C, h, w): x_T ... x_0
    log_probs: torch.Tensor  # (B, T) float32
    timesteps: torch.Tensor  # (T,) long (DDIM) or float (flow matching)
    prompt_embeds: torch.Tensor  # (B, L, D)
    pooled_embeds: torch.Tensor | None = None  # (B, P): a flow transformer's pooled text projection

    def index(self, rows: torch.Tensor | slice) -> Trajectories:
        pooled = self.pooled_embeds[rows] if self.pooled_embeds is not None else None
        return Trajectories(self.latents[rows], self.log_probs[rows], self.timesteps, self.prompt_embeds[rows], pooled)

    @staticmethod
    def cat(parts: Sequence[Trajectories]) -> Trajectories:
        pooled = None if parts[0].pooled_embeds is None else torch.cat([p.pooled_embeds for p in parts])
        return Trajectories(
            torch.cat([p.latents for p in parts]),
            torch.cat([p.log_probs for p in parts]),
            parts[0].timesteps,
            torch.cat([p.prompt_embeds for p in parts]),
            pooled,
        )


@torch.no_grad()
def encode_prompts(parts: Components, prompts: Sequence[str]) -> torch.Tensor:
    """Text-encoder hidden states for ``prompts`` (B, L, D)."""
    tokens = parts.tokenizer(
        list(prompts),
        padding="max_length",
        max_length=parts.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    return parts.text_encoder(tokens.input_ids.to(parts.device))[0]


def guided_noise(
    unet: torch.nn.Module,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    guidance_scale: float,
) -> torch.Tensor:
    """UNet prediction with classifier-free guidance; ``timesteps`` is a scalar or one per sample."""
    if guidance_scale == 1.0:
        return unet(latents, timesteps, encoder_hidden_states=prompt_embeds).sample
    t = timesteps.repeat(2) if timesteps.ndim else timesteps
    both = unet(
        torch.cat([latents, latents]), t, encoder_hidden_states=torch.cat([negative_embeds, prompt_embeds])
    ).sample
    uncond, cond = both.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


@torch.no_grad()
def decode(parts: LatentParts, latents: torch.Tensor) -> np.ndarray:
    """Decode final latents to (B, H, W, 3) uint8 pixels: unscaled, then unshifted where the VAE has a
    ``shift_factor`` (SD3, FLUX), as the pipelines do."""
    vae = parts.vae
    latents = latents.to(vae.dtype) / vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None)
    if shift:
        latents = latents + shift
    pixels = vae.decode(latents).sample
    pixels = ((pixels.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def to_pil(pixels: np.ndarray) -> list[Image.Image]:
    return [Image.fromarray(p) for p in pixels]


@torch.no_grad()
def sample(
    parts: Components,
    prompts: Sequence[str],
    seeds: Sequence[int],
    steps: int,
    guidance_scale: float,
    eta: float = 1.0,
    size: tuple[int, int] | None = None,
    negative_embeds: torch.Tensor | None = None,
) -> tuple[np.ndarray, Trajectories]:
    """Draw one image per (prompt, seed); returns (uint8 pixels (B, H, W, 3), trajectories)."""
    from diffusers.utils.torch_utils import randn_tensor

    if len(prompts) != len(seeds):
        raise ValueError("prompts and seeds must have the same length")
    height, width = size or parts.default_size()
    factor = parts.latent_factor()
    generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    embeds = encode_prompts(parts, prompts)
    if negative_embeds is None:
        negative_embeds = encode_prompts(parts, [""])
    negative = negative_embeds.expand(len(prompts), -1, -1)
    scheduler = parts.scheduler
    scheduler.set_timesteps(steps, device=parts.device)
    shape = (len(prompts), parts.unet.config.in_channels, height // factor, width // factor)
    latents = randn_tensor(shape, generator=generators, device=parts.device, dtype=embeds.dtype)
    latents = latents * scheduler.init_noise_sigma
    all_latents, log_probs = [latents], []
    for t in scheduler.timesteps:
        with parts.autocast():
            noise = guided_noise(parts.unet, latents, t, embeds, negative, guidance_scale)
        latents, log_prob = ddim_step_with_logprob(scheduler, noise, t, latents, eta=eta, generator=generators)
        all_latents.append(latents)
        log_probs.append(log_prob)
    images = decode(parts, latents)
    trajectories = Trajectories(
        latents=torch.stack(all_latents, dim=1),
        log_probs=torch.stack(log_probs, dim=1),
        timesteps=scheduler.timesteps.clone(),
        prompt_embeds=embeds,
    )
    return images, trajectories


def sample_deterministic(
    parts: Components,
    prompts: Sequence[str],
    seeds: Sequence[int],
    steps: int,
    guidance_scale: float,
    batch_size: int,
    size: tuple[int, int] | None = None,
    negative_embeds: torch.Tensor | None = None,
) -> np.ndarray:
    """Deterministic samples (DDIM η = 0, or a flow model's Euler ODE: a function of each prompt and seed only),
    in batches; (B, H, W, 3) uint8 pixels. ``parts``: :class:`Components` or ``flow_sampling.FlowComponents``."""
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = slice(start, start + batch_size)
        pixels, _ = parts.sample(prompts[chunk], seeds[chunk], steps, guidance_scale, 0.0, size, negative_embeds)
        out.append(pixels)
    return np.concatenate(out)


def grid_png(before: np.ndarray, after: np.ndarray, min_height: int = 128) -> bytes:
    """Two rows of images (before above after), enlarged to at least ``min_height`` pixels a row, as PNG bytes."""
    import io

    grid = np.concatenate([np.concatenate(list(before), axis=1), np.concatenate(list(after), axis=1)], axis=0)
    image = Image.fromarray(grid)
    scale = max(1, min_height // before.shape[1])
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
