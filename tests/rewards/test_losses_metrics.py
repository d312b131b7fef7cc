"""Loss and metric values on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rewards.losses import preference_loss, preference_loss_per_example
from rewards.metrics import (
    accuracy_gain,
    choose_threshold,
    decisive_accuracy,
    expected_calibration_error,
    human_ceiling,
    log_loss,
    pair_probabilities,
    tie_aware_accuracy,
    tie_aware_points,
)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_loss_win_loss_tie_by_hand():
    # s_a = 1, s_b = 0: p_a = sigmoid(1). Win: -log sigmoid(1) = log(1 + e^-1); loss: log(1 + e).
    win = math.log(1 + math.exp(-1))
    lose = math.log(1 + math.exp(1))
    got = preference_loss_per_example(t(1, 1, 1), t(0, 0, 0), t(1, 0, 0.5), t(0, 1, 0.5))
    # Tie: cross-entropy 0.5 * (win + lose) minus the target's entropy log 2.
    expected = [win, lose, 0.5 * (win + lose) - math.log(2)]
    assert got.tolist() == pytest.approx(expected, abs=1e-6)
    assert expected[2] == pytest.approx(0.120114, abs=1e-6)


def test_perfect_tie_prediction_costs_zero_and_perfect_win_tends_to_zero():
    got = preference_loss_per_example(t(3.0, -2.0), t(3.0, -2.0), t(0.5, 0.5), t(0.5, 0.5))
    assert got.tolist() == [0.0, 0.0]
    assert preference_loss_per_example(t(50.0), t(0.0), t(1.0), t(0.0)).item() < 1e-12


def test_loss_weighted_mean():
    per = preference_loss_per_example(t(1, 1), t(0, 0), t(1, 0), t(0, 1))
    weighted = preference_loss(t(1, 1), t(0, 0), t(1, 0), t(0, 1), weights=t(1.0, 3.0))
    assert weighted.item() == pytest.approx((per[0] + 3 * per[1]).item() / 4, abs=1e-6)
    assert preference_loss(t(1, 1), t(0, 0), t(1, 0), t(0, 1)).item() == pytest.approx(per.mean().item())


def test_loss_gradient_is_plain_cross_entropy():
    scores = t(0.3, -0.2).requires_grad_()
    preference_loss(scores[:1], scores[1:], t(1.0), t(0.0)).backward()
    p_a = torch.sigmoid(torch.tensor(0.5)).item()
    assert scores.grad.tolist() == pytest.approx([p_a - 1, 1 - p_a], abs=1e-6)


def test_tie_aware_accuracy_by_hand():
    p_a = [0.9, 0.2, 0.55, 0.5, 0.8]
    labels = [1, 1, 0.5, 0.5, 0.5]
    # t = 0.2: |p_a - p_b| = 0.8, 0.6, 0.1, 0, 0.6 → predictions a, b, tie, tie, a against a, a, tie, tie, tie:
    # 1 + 0 + 1 + 1 + 0.5 = 3.5 of 5.
    assert tie_aware_accuracy(p_a, labels, 0.2) == pytest.approx(0.7)
    # t = 0: only the exact 0.5 is a tie → a, b, a, tie, a: 1 + 0 + 0.5 + 1 + 0.5.
    assert tie_aware_accuracy(p_a, labels, 0.0) == pytest.approx(0.6)
    threshold, accuracy = choose_threshold(p_a, labels)
    assert accuracy == pytest.approx(0.7) and 0.1 <= threshold < 0.6
    assert decisive_accuracy(p_a, labels) == pytest.approx(0.5)
    assert tie_aware_points(p_a, labels, 0.2).tolist() == [1.0, 0.0, 1.0, 1.0, 0.5]


def test_accuracy_gain_is_paired_and_its_interval_resamples_prompts():
    p_a = [0.9, 0.8, 0.55, 0.5, 0.8, 0.1]
    labels = [1, 1, 0.5, 0.5, 0.5, 0]
    prompts = ["x", "x", "y", "y", "z", "z"]
    always_tie = [0.5] * 6  # what zero-shot does on a preference it ranks the wrong way
    gain = accuracy_gain(p_a, 0.2, always_tie, 0.0, labels, prompts)
    # points 1, 1, 1, 1, 0.5, 1 against 0.5, 0.5, 1, 1, 1, 0.5: +1 over 6 pairs.
    expected = tie_aware_accuracy(p_a, labels, 0.2) - tie_aware_accuracy(always_tie, labels, 0.0)
    assert gain["value"] == pytest.approx(expected) == pytest.approx(1 / 6)
    assert gain["low"] <= gain["value"] <= gain["high"] and gain["low"] < gain["high"]
    assert (gain["prompts"], gain["items"]) == (3, 6)
    one_prompt = accuracy_gain(p_a, 0.2, always_tie, 0.0, labels, ["x"] * 6)
    assert one_prompt["value"] == pytest.approx(1 / 6) and one_prompt["low"] is None and one_prompt["high"] is None
    with pytest.raises(ValueError, match="one entry per pair"):
        accuracy_gain(p_a, 0.2, always_tie, 0.0, labels, prompts[:-1])


def test_probabilities_log_loss_and_ece():
    assert pair_probabilities([1.0], [0.0])[0] == pytest.approx(1 / (1 + math.exp(-1)))
    assert pair_probabilities([1000.0], [-1000.0])[0] == 1.0
    assert log_loss([0.8, 0.5], [1.0, 0.5]) == pytest.approx((-math.log(0.8) + math.log(2)) / 2)
    # Confidence 0.8 in one bin, right 3 of 4 times: |0.75 - 0.8|.
    assert expected_calibration_error([0.8, 0.8, 0.2, 0.8], [1, 1, 0, 0]) == pytest.approx(0.05)
    assert math.isnan(expected_calibration_error([0.7], [0.5]))
    assert np.isnan(decisive_accuracy([0.7], [0.5]))


def test_human_ceiling_leave_one_out_by_hand():
    votes = {"p1": [1, 1, 0], "p2": [1, 1], "p3": [0.5, 1], "single": [1]}
    # p1: each a-vote faces {a, b} (level: a tie) → 0.5, 0.5; the b-vote faces {a, a} → 0.
    # p2: 1, 1. p3: the tie vote faces {a} → 0.5; the a-vote faces {tie} → 0.5. "single" has no others.
    got = human_ceiling(votes)
    assert got["agreement"] == pytest.approx(4 / 7)
    assert got["decisive_agreement"] == pytest.approx(2 / 3)
    assert (got["pairs"], got["votes"]) == (3, 7)
    assert math.isnan(human_ceiling({"x": [1]})["agreement"])
