"""One DDIM step that also returns the Gaussian log-probability of the step's result (DDPO's policy).

With eta > 0 a DDIM step is a Gaussian transition x_{t-1} ~ N(mean(x_t, model_output), std_t²); the log-density
of ``prev_sample`` under it is averaged over all non-batch dimensions (as DDPO does). Works for epsilon-,
sample- and v-prediction, and for a tensor of timesteps (one per sample) as well as a single timestep.
"""

from __future__ import annotations

import math

import torch


def per_sample(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """Shape a (B,) or scalar tensor to broadcast against a (B, ...) sample."""
    return values.reshape(values.shape + (1,) * (ndim - values.ndim)) if values.ndim else values


def ddim_mean_std(
    scheduler, model_output: torch.Tensor, timestep: int | torch.Tensor, sample: torch.Tensor, eta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of the DDIM transition from ``sample`` at ``timestep`` (computed in fp32)."""
    if scheduler.num_inference_steps is None:
        raise ValueError("Call scheduler.set_timesteps(...) before stepping.")
    config = scheduler.config
    if config.thresholding:
        raise NotImplementedError("Dynamic thresholding makes the DDIM step non-Gaussian; disable it for DDPO.")
    device = sample.device
    t = torch.as_tensor(timestep, device=device).long()
    prev_t = t - config.num_train_timesteps // scheduler.num_inference_steps
    alphas = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    final = torch.as_tensor(scheduler.final_alpha_cumprod, device=device, dtype=torch.float32)
    alpha_t = per_sample(alphas[t], sample.ndim)
    alpha_prev = per_sample(torch.where(prev_t >= 0, alphas[prev_t.clamp(min=0)], final), sample.ndim)
    beta_t = 1 - alpha_t
    x, out = sample.float(), model_output.float()

    kind = config.prediction_type
    if kind == "epsilon":
        x0, eps = (x - beta_t.sqrt() * out) / alpha_t.sqrt(), out
    elif kind == "sample":
        x0, eps = out, (x - alpha_t.sqrt() * out) / beta_t.sqrt()
    elif kind == "v_prediction":
        x0, eps = alpha_t.sqrt() * x - beta_t.sqrt() * out, alpha_t.sqrt() * out + beta_t.sqrt() * x
    else:
        raise ValueError(f"Unsupported prediction_type {kind!r}: use epsilon, sample or v_prediction.")
    if config.clip_sample:
        x0 = x0.clamp(-config.clip_sample_range, config.clip_sample_range)

    variance = (1 - alpha_prev) / (1 - alpha_t) * (1 - alpha_t / alpha_prev)
    std = eta * variance.clamp(min=0).sqrt()
    direction = (1 - alpha_prev - std**2).clamp(min=0).sqrt() * eps
    mean = alpha_prev.sqrt() * x0 + direction
    return mean, std


def gaussian_log_prob(value: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Log-density of ``value`` under N(mean, std²), averaged over all non-batch dimensions; zero where std = 0."""
    std = std.expand_as(mean) if std.ndim else std.expand(mean.shape)
    safe = torch.where(std > 0, std, torch.ones_like(std))
    log_prob = -((value.float() - mean) ** 2) / (2 * safe**2) - torch.log(safe) - 0.5 * math.log(2 * math.pi)
    log_prob = torch.where(std > 0, log_prob, torch.zeros_like(log_prob))
    return log_prob.mean(dim=tuple(range(1, log_prob.ndim)))


def ddim_step_with_logprob(
    scheduler,
    model_output: torch.Tensor,
    timestep: int | torch.Tensor,
    sample: torch.Tensor,
    eta: float = 1.0,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DDIM step returning ``(prev_sample, log_prob)``; ``log_prob`` has shape (B,).

    Without ``prev_sample`` one is drawn (``generator`` may be one generator or one per sample); with it, its
    log-probability under the step is returned (the PPO ratio's numerator). ``prev_sample`` keeps the input dtype.
    """
    from diffusers.utils.torch_utils import randn_tensor

    mean, std = ddim_mean_std(scheduler, model_output, timestep, sample, eta)
    if prev_sample is None:
        noise = randn_tensor(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        prev_sample = (mean + std * noise).to(sample.dtype)
    return prev_sample, gaussian_log_prob(prev_sample, mean, std)
