"""One flow-matching SDE step that also returns the Gaussian log-probability of its result (Flow-GRPO's policy).

A flow-matching model (SD3/SD3.5, FLUX) predicts the velocity v = ε − x₀ of x_σ = (1 − σ)·x₀ + σ·ε, and its
sampler integrates the ODE dx = v dσ from σ = 1 to 0, which has no randomness and so no policy to optimise.
Flow-GRPO (Liu et al., 2025) replaces it with an SDE that has the same marginals at every σ:

    x_next = x + [v + s²/(2σ)·(x + (1 − σ)·v)]·dσ + s·√(−dσ)·z,    s = a·√(σ / (1 − σ)),  z ~ N(0, I)

with dσ = σ_next − σ < 0 and ``noise_level`` a. Each step is a Gaussian transition, so the log-density of x_next
is exact; it is averaged over the non-batch dimensions, as ``ddim_logprob`` does for DDPO. Everything is computed
in fp32. At σ = 1 (the first step of an unshifted schedule) 1 − σ is replaced by 1 − σ₁ (the next sigma), as the
paper's code does, so that s stays finite.
"""

from __future__ import annotations

import torch

from .ddim_logprob import gaussian_log_prob, per_sample


def step_sigmas(scheduler, timestep: float | torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """σ and the next step's σ for ``timestep`` (a scalar, or one per sample) of a ``FlowMatchEulerDiscreteScheduler``.

    Each timestep is matched to the nearest one of the scheduler's current schedule (``set_timesteps`` first).
    """
    if getattr(scheduler, "num_inference_steps", None) is None:  # before set_timesteps σ has no final 0
        raise ValueError("Call scheduler.set_timesteps(...) before stepping.")
    schedule = scheduler.timesteps.to(device=device, dtype=torch.float32)
    sigmas = scheduler.sigmas.to(device=device, dtype=torch.float32)
    t = torch.as_tensor(timestep, device=device, dtype=torch.float32)
    index = (t.reshape(-1, 1) - schedule.reshape(1, -1)).abs().argmin(dim=1).reshape(t.shape)
    return sigmas[index], sigmas[index + 1]


def flow_sde_mean_std(
    scheduler,
    model_output: torch.Tensor,
    timestep: float | torch.Tensor,
    sample: torch.Tensor,
    noise_level: float = 0.7,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean, std, std_dev_t)`` of the SDE transition from ``sample`` at ``timestep``; ``std`` = s·√(−dσ)."""
    sigma, sigma_next = step_sigmas(scheduler, timestep, sample.device)
    sigma_one = scheduler.sigmas[1].to(device=sample.device, dtype=torch.float32)
    sigma, sigma_next = per_sample(sigma, sample.ndim), per_sample(sigma_next, sample.ndim)
    denominator = 1 - torch.where(sigma >= 1, sigma_one, sigma)
    std_dev_t = (sigma / denominator).sqrt() * noise_level
    dt = sigma_next - sigma
    x, v = sample.float(), model_output.float()
    mean = x * (1 + std_dev_t**2 / (2 * sigma) * dt) + v * (1 + std_dev_t**2 * (1 - sigma) / (2 * sigma)) * dt
    return mean, std_dev_t * (-dt).clamp(min=0).sqrt(), std_dev_t


def sde_step_with_logprob(
    scheduler,
    model_output: torch.Tensor,
    timestep: float | torch.Tensor,
    sample: torch.Tensor,
    noise_level: float = 0.7,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flow-GRPO's SDE step: ``(prev_sample, log_prob, prev_sample_mean, std_dev_t)``, ``log_prob`` of shape (B,).

    Without ``prev_sample`` one is drawn (``generator``: one, or one per sample); with it, its log-probability
    under the step is returned (the PPO ratio's numerator). ``prev_sample`` keeps the input dtype.
    """
    from diffusers.utils.torch_utils import randn_tensor

    mean, std, std_dev_t = flow_sde_mean_std(scheduler, model_output, timestep, sample, noise_level)
    if prev_sample is None:
        noise = randn_tensor(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        prev_sample = (mean + std * noise).to(sample.dtype)
    log_prob = gaussian_log_prob(prev_sample.detach(), mean, std)
    return prev_sample, log_prob, mean, std_dev_t
