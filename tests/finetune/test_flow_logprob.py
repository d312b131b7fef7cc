"""Flow-GRPO's SDE step (finetune/flow_logprob.py): same marginals as the flow ODE, exact Gaussian log-probs."""

from __future__ import annotations

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from torch.distributions import Normal

from finetune.flow_logprob import sde_step_with_logprob

# Data x₀ ~ N(M, S²): the marginal of x_σ = (1 − σ)x₀ + σε is Gaussian, and the exact velocity E[ε − x₀ | x_σ] is
# linear in x_σ, so an SDE step fed the true velocity can be checked against the known marginal at the next σ.
M, S = 0.5, 0.3


def _marginal(sigma: float) -> tuple[float, float]:
    return (1 - sigma) * M, (1 - sigma) ** 2 * S**2 + sigma**2


def _velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
    _, variance = _marginal(sigma)
    centred = x - (1 - sigma) * M
    return sigma / variance * centred - (M + (1 - sigma) * S**2 / variance * centred)


def _scheduler(steps: int, shift: float = 3.0) -> FlowMatchEulerDiscreteScheduler:
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)  # SD3's shift
    scheduler.set_timesteps(steps)
    return scheduler


# Not the first few steps: near σ = 1 the drift s²/(2σ) grows like 1/(1 − σ) and one Euler–Maruyama step overshoots
# the variance by several per cent unless dσ ≪ 1 − σ (the paper's scheme; the whole-trajectory test covers them).
@pytest.mark.parametrize("index", [10, 40, 80, 120, 160, 198])
def test_an_sde_step_from_the_marginal_lands_on_the_next_marginal(index):
    scheduler = _scheduler(200)
    sigma, sigma_next = float(scheduler.sigmas[index]), float(scheduler.sigmas[index + 1])
    generator = torch.Generator().manual_seed(index)
    mean, variance = _marginal(sigma)
    x = mean + variance**0.5 * torch.randn(200_000, 1, generator=generator)
    stepped, _, _, std_dev_t = sde_step_with_logprob(
        scheduler, _velocity(x, sigma), scheduler.timesteps[index], x, noise_level=0.7, generator=generator
    )
    assert float(std_dev_t) > 0.1  # a real SDE step, not the ODE
    want_mean, want_variance = _marginal(sigma_next)
    assert abs(float(stepped.mean()) - want_mean) < 0.01
    assert abs(float(stepped.var()) / want_variance - 1) < 0.02


def test_a_whole_sde_trajectory_ends_on_the_data_distribution_as_the_ode_does():
    scheduler = _scheduler(400, shift=1.0)
    finals = {}
    for noise_level in (0.7, 0.0):
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(100_000, 1, generator=generator)
        for index, timestep in enumerate(scheduler.timesteps):
            velocity = _velocity(x, float(scheduler.sigmas[index]))
            x, *_ = sde_step_with_logprob(scheduler, velocity, timestep, x, noise_level, generator=generator)
        finals[noise_level] = x
    for x in finals.values():
        assert abs(float(x.mean()) - M) < 0.01 and abs(float(x.std()) / S - 1) < 0.03
    assert not torch.allclose(finals[0.7], finals[0.0])  # the SDE did draw noise


def test_log_prob_is_the_step_gaussian_and_is_reproduced_for_a_given_sample():
    scheduler = _scheduler(10)
    generator = torch.Generator().manual_seed(0)
    x, velocity = torch.randn(3, 4, 8, 8, generator=generator), torch.randn(3, 4, 8, 8, generator=generator)
    timestep = scheduler.timesteps[4]
    drawn, log_prob, mean, std_dev_t = sde_step_with_logprob(scheduler, velocity, timestep, x, generator=generator)
    dt = float(scheduler.sigmas[5] - scheduler.sigmas[4])
    expected = Normal(mean, std_dev_t * (-dt) ** 0.5).log_prob(drawn).mean(dim=(1, 2, 3))
    torch.testing.assert_close(log_prob, expected, rtol=1e-5, atol=1e-5)
    again = sde_step_with_logprob(scheduler, velocity, timestep, x, prev_sample=drawn)
    assert torch.equal(again[0], drawn) and torch.equal(again[1], log_prob)  # PPO ratio exactly 1


def test_per_sample_timesteps_equal_stepping_each_sample_alone():
    scheduler = _scheduler(10)
    generator = torch.Generator().manual_seed(1)
    x, velocity = torch.randn(3, 4, 8, 8, generator=generator), torch.randn(3, 4, 8, 8, generator=generator)
    target = torch.randn(3, 4, 8, 8, generator=generator)
    timesteps = scheduler.timesteps[[0, 4, 9]]
    _, batched, _, _ = sde_step_with_logprob(scheduler, velocity, timesteps, x, prev_sample=target)
    for row, timestep in enumerate(timesteps):
        _, alone, _, _ = sde_step_with_logprob(
            scheduler, velocity[row : row + 1], timestep, x[row : row + 1], prev_sample=target[row : row + 1]
        )
        torch.testing.assert_close(batched[row : row + 1], alone)


def test_the_first_step_at_sigma_one_is_finite_and_half_precision_is_computed_in_fp32():
    scheduler = _scheduler(10, shift=1.0)
    assert float(scheduler.sigmas[0]) == 1.0
    x = torch.randn(2, 4, 8, 8, dtype=torch.float16)
    drawn, log_prob, mean, std_dev_t = sde_step_with_logprob(
        scheduler, torch.randn_like(x), scheduler.timesteps[0], x, generator=torch.Generator().manual_seed(0)
    )
    assert drawn.dtype == torch.float16 and mean.dtype == torch.float32 and log_prob.dtype == torch.float32
    assert torch.isfinite(std_dev_t).all() and torch.isfinite(log_prob).all() and torch.isfinite(mean).all()


def test_an_unset_scheduler_is_a_clear_error():
    with pytest.raises(ValueError, match="set_timesteps"):
        sde_step_with_logprob(FlowMatchEulerDiscreteScheduler(), torch.zeros(1, 1), 500.0, torch.zeros(1, 1))
