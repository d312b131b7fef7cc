"""DDPO building blocks: the DDIM step's log-probability, the PPO loss, advantages, config validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from torch.distributions import Normal

from finetune.advantages import PerPromptStatTracker
from finetune.config import ConfigError, DDPOConfig
from finetune.ddim_logprob import ddim_step_with_logprob
from finetune.ddpo import ppo_loss, trained_steps
from tests.finetune.ddpo_support import PIPELINE


def _scheduler(prediction_type: str) -> DDIMScheduler:
    scheduler = DDIMScheduler.from_pretrained(PIPELINE, subfolder="scheduler", prediction_type=prediction_type)
    scheduler.set_timesteps(10)
    return scheduler


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_log_prob_is_the_analytic_gaussian_density(prediction_type):
    scheduler = _scheduler(prediction_type)
    torch.manual_seed(0)
    sample, output = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    eta = 1.0
    for t in scheduler.timesteps:
        # Independent reference: diffusers' own DDIM step without noise gives the mean, _get_variance the std.
        mean = scheduler.step(output, t, sample, eta=eta, variance_noise=torch.zeros_like(sample)).prev_sample
        prev_t = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        std = eta * scheduler._get_variance(t, prev_t) ** 0.5
        prev = mean + std * torch.randn_like(mean)
        expected = Normal(mean, std).log_prob(prev).mean(dim=(1, 2, 3))
        drawn, log_prob = ddim_step_with_logprob(scheduler, output, t, sample, eta=eta, prev_sample=prev)
        assert torch.equal(drawn, prev)
        torch.testing.assert_close(log_prob, expected, rtol=1e-5, atol=1e-5)


def test_drawn_sample_matches_diffusers_step_and_batched_timesteps_match_single():
    scheduler = _scheduler("epsilon")
    torch.manual_seed(1)
    sample, output = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = scheduler.timesteps[3]
    ours, _ = ddim_step_with_logprob(scheduler, output, t, sample, generator=torch.Generator().manual_seed(5))
    theirs = scheduler.step(output, t, sample, eta=1.0, generator=torch.Generator().manual_seed(5)).prev_sample
    torch.testing.assert_close(ours, theirs)

    times = scheduler.timesteps[[0, 9]]
    prev = torch.randn_like(sample)
    _, batched = ddim_step_with_logprob(scheduler, output, times, sample, prev_sample=prev)
    for row in range(2):
        _, single = ddim_step_with_logprob(
            scheduler, output[row : row + 1], times[row], sample[row : row + 1], prev_sample=prev[row : row + 1]
        )
        torch.testing.assert_close(batched[row : row + 1], single)


def test_eta_zero_is_deterministic_with_zero_log_prob():
    scheduler = _scheduler("epsilon")
    sample, output = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = scheduler.timesteps[0]
    prev, log_prob = ddim_step_with_logprob(scheduler, output, t, sample, eta=0.0)
    torch.testing.assert_close(prev, scheduler.step(output, t, sample, eta=0.0).prev_sample)
    assert torch.equal(log_prob, torch.zeros(2))


def test_ppo_loss_on_policy_ratio_is_one_and_clipping_counts():
    log_prob = torch.tensor([0.5, -0.2, 0.1], requires_grad=True)
    advantages = torch.tensor([1.0, -1.0, 2.0])
    loss, stats = ppo_loss(log_prob, log_prob.detach(), advantages, clip_range=1e-4)
    assert stats["ratio_max_deviation"] == 0 and stats["clip_fraction"] == 0
    loss.backward()
    torch.testing.assert_close(log_prob.grad, -advantages / 3)
    _, stats = ppo_loss(log_prob.detach() + 0.1, log_prob.detach(), advantages, clip_range=1e-2)
    assert stats["clip_fraction"] == 1


def test_stat_tracker_per_prompt_after_min_count_and_serialisable():
    tracker = PerPromptStatTracker(buffer_size=4, min_count=2, clip=5.0, mode="history")
    first = tracker.update(["a", "b"], [1.0, 3.0])  # one reward each: batch statistics
    np.testing.assert_allclose(first, [-1, 1], atol=1e-5)
    second = tracker.update(["a", "a", "b", "b"], [0.0, 2.0, 3.0, 3.0])
    history_a = np.array([1.0, 0.0, 2.0])
    np.testing.assert_allclose(second[:2], (np.array([0.0, 2.0]) - history_a.mean()) / history_a.std(), rtol=1e-4)
    np.testing.assert_allclose(second[2:], 0.0, atol=1e-6)  # b's rewards are all 3: zero advantage
    restored = PerPromptStatTracker.from_state_dict(json.loads(json.dumps(tracker.state_dict())))
    np.testing.assert_array_equal(restored.update(["a"], [5.0]), tracker.update(["a"], [5.0]))
    assert np.abs(PerPromptStatTracker(clip=1.0, mode="batch").update(["x"] * 4, [0, 0, 0, 100])).max() <= 1.0


def test_stat_tracker_group_centres_on_the_prompt_and_divides_by_the_pooled_spread():
    tracker = PerPromptStatTracker(clip=5.0)  # mode "group", the default
    rewards = np.array([10.0, 12.0, 0.0, 4.0, 100.0, 100.0])  # prompt offsets of 11, 2 and 100
    advantages = tracker.update(["a", "a", "b", "b", "c", "c"], rewards)
    residuals = np.array([-1.0, 1.0, -2.0, 2.0, 0.0, 0.0])
    np.testing.assert_allclose(advantages, residuals / np.sqrt(np.mean(residuals**2)), rtol=1e-5)
    assert tracker.buffers == {}  # no history: only this batch counts
    restored = PerPromptStatTracker.from_state_dict(json.loads(json.dumps(tracker.state_dict())))
    assert restored.mode == "group" and restored.state_dict() == tracker.state_dict()
    batch = PerPromptStatTracker(mode="batch").update(["a", "a", "b", "b", "c", "c"], rewards)
    np.testing.assert_allclose(batch, (rewards - rewards.mean()) / rewards.std(), rtol=1e-5)


def test_trained_steps_draw_only_inside_the_early_window():
    generator = torch.Generator().manual_seed(0)
    every = trained_steps(64, 10, 0, 1.0, generator)
    assert every.shape == (64, 10) and all(sorted(row.tolist()) == list(range(10)) for row in every)
    early = trained_steps(64, 10, 4, 1.0, generator)
    assert early.shape == (64, 4) and all(sorted(row.tolist()) == [0, 1, 2, 3] for row in early)
    half = trained_steps(256, 10, 4, 0.5, generator)
    assert half.shape == (256, 2) and int(half.max()) == 3 and int(half.min()) == 0
    assert len({tuple(sorted(row.tolist())) for row in half}) == 6  # every pair of the window gets drawn
    assert trained_steps(8, 10, 20, 1.0, generator).shape == (8, 10)  # a window past the end is every step


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"lerning_rate": 1e-3}, "lerning_rate"),
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"clip_range": -1}, "clip_range"),
        ({"eta": 0}, "eta"),
        ({"timestep_fraction": 1.5}, "timestep_fraction"),
        ({"timestep_window": -1}, "timestep_window"),
        ({"train_batch_size": 5}, "train_batch_size"),
        ({"mixed_precision": "fp8"}, "mixed_precision"),
        ({"lora_targets": []}, "lora_targets"),
        ({"stat_min_count": 64}, "stat_min_count"),
        ({"epochs": True}, "epochs"),
        ({"advantage_stats": "per_prompt"}, "advantage_stats"),
        ({"per_prompt_stats": True}, "per_prompt_stats"),
        ({"images_per_prompt": 1}, "images_per_prompt"),
    ],
)
def test_bad_configs_name_the_field(values, field):
    with pytest.raises(ConfigError) as caught:
        DDPOConfig.from_dict(values)
    assert caught.value.field_name == field
    assert str(caught.value).startswith(f"{field}:")


def test_config_round_trips_through_a_dict():
    config = DDPOConfig.from_dict({"learning_rate": 1, "lora_targets": ["to_q", "to_v"]})
    assert config.learning_rate == 1.0 and config.lora_targets == ("to_q", "to_v")
    assert DDPOConfig.from_dict(config.to_dict()) == config
