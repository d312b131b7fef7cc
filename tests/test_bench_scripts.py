"""The arithmetic of the issue-15 benches (bench/probe_features.py, bench/reward_curve.py) on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from bench.probe_features import probe_r2, within_group
from bench.reward_curve import Candidate, CurveConfig, World, votes_to_reach


def test_probe_r2_sees_a_linear_target_and_not_noise():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 6)
    x = rng.normal(size=(240, 30))
    linear = x @ rng.normal(size=30)
    noise = rng.normal(size=240)
    scores = probe_r2(x, np.stack([linear, noise], axis=1), groups)
    assert scores[0] > 0.95
    assert scores[1] < 0.05


def test_probe_r2_is_held_out_by_prompt():
    # A target that is one random value per prompt: memorising the prompts cannot carry over to unseen ones.
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(40), 6)
    prompt_code = np.eye(40)[groups]  # the features identify the prompt
    target = rng.normal(size=40)[groups]
    assert probe_r2(prompt_code, target[:, None], groups)[0] < 0.05


def test_within_group_removes_each_prompts_mean():
    values = np.array([[1.0], [3.0], [10.0], [14.0]])
    assert within_group(values, np.array(["a", "a", "b", "b"]))[:, 0].tolist() == [-1.0, 1.0, -2.0, 2.0]


def test_votes_to_reach_interpolates_between_budgets():
    curve = {100: 0.5, 300: 0.7, 600: 0.8, 1000: 0.85}
    assert votes_to_reach(curve, 0.45) == 100
    assert votes_to_reach(curve, 0.75) == pytest.approx(450)
    assert votes_to_reach(curve, 0.85) == pytest.approx(1000)
    assert votes_to_reach(curve, 0.9) is None


def test_simulated_votes_follow_the_oracle_with_the_flip_rate():
    images = {"p": [np.zeros((2, 2, 3), np.uint8)] * 3}
    world = World(images, {"p": np.array([0.9, 0.1, 0.88])})
    config = CurveConfig()
    assert len(world.candidates) == 3
    assert world.label(Candidate("p", 0, 1), config.tie_margin) == 1.0
    assert world.label(Candidate("p", 1, 0), config.tie_margin) == 0.0
    assert world.label(Candidate("p", 0, 2), config.tie_margin) == 0.5  # within the tie margin
    votes = world.votes(Candidate("p", 0, 1), 4000, config, np.random.default_rng(0))
    assert np.mean(np.asarray(votes) == 0.0) == pytest.approx(config.flip_probability, abs=0.02)


def test_the_gpu_flow_bench_runs_its_code_paths_on_the_cpu(capsys):
    from bench.gpu_flow import main

    main(["--smoke", "--epochs", "2", "--samples", "8", "--sample-batch", "4", "--train-batch", "4"])
    out = capsys.readouterr().out
    assert "sd35 Flow-GRPO: sampling" in out and '"algorithm": "flow_grpo"' in out and "flux generation" in out
