"""The DDPO / Flow-GRPO objective and one optimisation step on a batch of recorded trajectories.

Loss (Black et al. 2023, PPO form; Flow-GRPO uses the same clipped surrogate on its SDE steps): for each selected
step of each trajectory, ``max(-A·r, -A·clip(r, 1-ε, 1+ε))`` with ``r = exp(log π_θ(x_{t-1}|x_t) - log
π_old(x_{t-1}|x_t))``, plus optionally ``β·KL(π_θ || π_base)`` where the reference is the same denoiser with its
adapter disabled; for two Gaussians with the same std the per-step KL is ``|μ_θ - μ_base|² / 2σ²`` (mean over
dimensions). The step's Gaussian comes from the parts (``transition``): a DDIM step of a UNet
(:class:`finetune.sampling.Components`) or a flow SDE step of a transformer
(:class:`finetune.flow_sampling.FlowComponents`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from .flow_sampling import FlowComponents
from .lora import adapter_disabled
from .sampling import Components, Trajectories


@dataclass
class StepSettings:
    """What a train step needs besides the data and the model."""

    guidance_scale: float
    noise: float  # DDIM's η (DDPO) or the flow SDE's noise level (Flow-GRPO)
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
    parts: Components | FlowComponents,
    batch: Trajectories,
    advantages: torch.Tensor,
    step_indices: torch.Tensor,
    negative_embeds: Any,
    settings: StepSettings,
    optimizer: torch.optim.Optimizer,
    accelerator,
    measure_kl: bool = False,
) -> dict[str, float]:
    """Accumulate gradients over the selected timesteps of ``batch``, then take one optimizer step.

    ``model`` is the (possibly DDP-wrapped) denoiser, ``parts.denoiser`` the plain one; ``step_indices`` (B, K) holds,
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
        last = number == len(chunks) - 1
        sync = contextlib.nullcontext() if last else accelerator.no_sync(model)
        with sync:
            step = (batch, owner, flat, negative_embeds, settings.guidance_scale, settings.noise)
            log_prob, mean, std = parts.transition(model, *step)
            adv = advantages[owner].clamp(-settings.adv_clip_max, settings.adv_clip_max)
            loss, stats = ppo_loss(log_prob, batch.log_probs[owner, flat], adv, settings.clip_range)
            if use_kl or measure_kl:
                kl = _kl_to_base(parts, step, mean, std)
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


def _kl_to_base(parts, step: tuple, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Per-row KL between this step's Gaussian and the base model's (adapter disabled), no gradient to the base."""
    with torch.no_grad(), adapter_disabled(parts.denoiser):
        _, base_mean, _ = parts.transition(parts.denoiser, *step)
    variance = (std**2).clamp(min=1e-12)
    kl = (mean - base_mean) ** 2 / (2 * variance)
    return kl.mean(dim=tuple(range(1, kl.ndim)))
