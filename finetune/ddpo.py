"""The DDPO objective and one optimisation step on a batch of recorded trajectories.

Loss (Black et al. 2023, PPO form): for each selected step of each trajectory,
``max(-A·r, -A·clip(r, 1-ε, 1+ε))`` with ``r = exp(log π_θ(x_{t-1}|x_t) - log π_old(x_{t-1}|x_t))``, plus optionally
``β·KL(π_θ || π_base)`` where the reference is the same UNet with its adapter disabled; for two Gaussians with the
same std the per-step KL is ``|μ_θ - μ_base|² / 2σ²`` (mean over dimensions).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .ddim_logprob import ddim_mean_std, gaussian_log_prob
from .lora import adapter_disabled
from .sampling import Components, Trajectories, guided_noise


@dataclass
class StepSettings:
    """What a train step needs besides the data and the model."""

    guidance_scale: float
    eta: float
    clip_range: float
    adv_clip_max: float
    kl_beta: float
    max_grad_norm: float
    timesteps_per_forward: int  # 0: all selected timesteps in one pass


def ppo_loss(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate loss (mean over rows) and its diagnostics (approx KL, clip fraction, ratio)."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = torch.maximum(unclipped, clipped).mean()
    stats = {
        "approx_kl": 0.5 * ((log_prob - old_log_prob) ** 2).mean().detach(),
        "clip_fraction": ((ratio - 1.0).abs() > clip_range).float().mean().detach(),
        "ratio_mean": ratio.mean().detach(),
        "ratio_max_deviation": (ratio - 1.0).abs().max().detach(),
    }
    return loss, stats


def trained_steps(rows: int, steps: int, window: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """For each of ``rows`` trajectories, the positions of the sampling steps to train on, shape (rows, K).

    Only the first ``window`` steps (the high-noise end, where the layout forms; 0: all ``steps``) are eligible
    and ``fraction`` of them are drawn at random per trajectory, as DDPO's ``timestep_fraction`` does.
    """
    window = min(window or steps, steps)
    count = max(1, int(round(window * fraction)))
    return torch.rand(rows, window, generator=generator).argsort(dim=1)[:, :count]


def _columns(count: int, per_forward: int) -> list[slice]:
    size = count if per_forward <= 0 else per_forward
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


def train_step(
    model: torch.nn.Module,
    parts: Components,
    batch: Trajectories,
    advantages: torch.Tensor,
    step_indices: torch.Tensor,
    negative_embeds: torch.Tensor,
    settings: StepSettings,
    optimizer: torch.optim.Optimizer,
    accelerator,
    measure_kl: bool = False,
) -> dict[str, float]:
    """Accumulate gradients over the selected timesteps of ``batch``, then take one optimizer step.

    ``model`` is the (possibly DDP-wrapped) UNet, ``parts.unet`` the plain one; ``step_indices`` (B, K) holds,
    for each trajectory, the positions of the K trained steps. Returns averaged diagnostics.
    """
    rows, count = step_indices.shape
    chunks = _columns(count, settings.timesteps_per_forward)
    totals: dict[str, float] = {}
    use_kl = settings.kl_beta > 0
    for number, cols in enumerate(chunks):
        positions = step_indices[:, cols]  # (B, c)
        width = positions.shape[1]
        owner = torch.arange(rows, device=positions.device).repeat_interleave(width)
        flat = positions.reshape(-1)
        x_t = batch.latents[owner, flat]
        x_prev = batch.latents[owner, flat + 1]
        t = batch.timesteps[flat]
        embeds = batch.prompt_embeds[owner]
        negative = negative_embeds.expand(len(owner), -1, -1)
        last = number == len(chunks) - 1
        sync = contextlib.nullcontext() if last else accelerator.no_sync(model)
        with sync:
            with parts.autocast():
                noise = guided_noise(model, x_t, t, embeds, negative, settings.guidance_scale)
            mean, std = ddim_mean_std(parts.scheduler, noise, t, x_t, settings.eta)
            log_prob = gaussian_log_prob(x_prev, mean, std)
            adv = advantages[owner].clamp(-settings.adv_clip_max, settings.adv_clip_max)
            loss, stats = ppo_loss(log_prob, batch.log_probs[owner, flat], adv, settings.clip_range)
            if use_kl or measure_kl:
                kl = _kl_to_base(parts, x_t, t, embeds, negative, settings, mean, std)
                stats["kl_to_base"] = kl.mean().detach()
                if use_kl:
                    loss = loss + settings.kl_beta * kl.mean()
            stats["loss"] = loss.detach()
            accelerator.backward(loss * (width / count))
        for key, value in stats.items():
            reduce = max if key == "ratio_max_deviation" else None
            current = float(value)
            if reduce:
                totals[key] = max(totals.get(key, 0.0), current)
            else:
                totals[key] = totals.get(key, 0.0) + current * width / count
    if accelerator.sync_gradients:
        norm = accelerator.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], settings.max_grad_norm)
        totals["grad_norm"] = float(norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return totals


def _kl_to_base(parts, x_t, t, embeds, negative, settings, mean, std) -> torch.Tensor:
    """Per-row KL between this step's Gaussian and the base model's (adapter disabled), no gradient to the base."""
    with torch.no_grad(), adapter_disabled(parts.unet), parts.autocast():
        base_noise = guided_noise(parts.unet, x_t, t, embeds, negative, settings.guidance_scale)
    base_mean, _ = ddim_mean_std(parts.scheduler, base_noise, t, x_t, settings.eta)
    variance = (std**2).clamp(min=1e-12)
    kl = (mean - base_mean) ** 2 / (2 * variance)
    return kl.mean(dim=tuple(range(1, kl.ndim)))
