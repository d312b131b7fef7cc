"""Acquisition functions (rewards.active): which pairs a campaign asks first."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from rewards.active import (
    acquisition_order,
    bald_score,
    closeness,
    diversify,
    mix_with_random,
    priority_for,
    uncertainty_priority,
)


@dataclass
class Pred:
    p_a: np.ndarray
    spread: np.ndarray


def pred(p, spread=None) -> Pred:
    p = np.asarray(p, dtype=float)
    return Pred(p, np.zeros_like(p) if spread is None else np.asarray(spread, dtype=float))


def test_closeness_is_one_at_a_coin_flip_and_zero_when_sure():
    assert closeness(pred([0.5, 1.0, 0.0, 0.75])).tolist() == pytest.approx([1.0, 0.0, 0.0, 0.5])


def test_bald_matches_the_exact_mutual_information_for_small_disagreement():
    # Two members at p ± d: exact MI = H(p) − mean H(p ± d); the approximation is spread² / (2 p (1 − p)).
    def h(q):
        return -(q * math.log2(q) + (1 - q) * math.log2(1 - q))

    for p, d in ((0.5, 0.05), (0.7, 0.04), (0.2, 0.03)):
        exact = h(p) - 0.5 * (h(p - d) + h(p + d))
        assert bald_score(pred([p], [d]))[0] == pytest.approx(exact, rel=0.05)


def test_bald_is_zero_without_disagreement_and_capped_by_the_entropy():
    assert bald_score(pred([0.5, 0.9], [0.0, 0.0])).tolist() == [0.0, 0.0]
    capped = bald_score(pred([0.999], [0.5]))[0]
    assert 0 < capped <= -(0.999 * math.log2(0.999) + 0.001 * math.log2(0.001)) + 1e-9


def test_uncertainty_priority_ranks_unsure_and_disagreeing_pairs_first():
    # sure and agreed; a coin flip; sure on average but the members disagree; a coin flip with disagreement.
    p = pred([0.95, 0.5, 0.8, 0.5], [0.0, 0.0, 0.2, 0.2])
    priority = uncertainty_priority(p)
    assert acquisition_order(priority).tolist() == [3, 1, 2, 0]
    # Disagreement only: the confident-but-disagreeing pair beats the agreed coin flip.
    only_disagreement = uncertainty_priority(p, closeness_weight=0.0)
    assert only_disagreement[2] > only_disagreement[1] == 0.0
    assert priority_for(p, "bald").tolist() == pytest.approx(only_disagreement.tolist())
    assert priority_for(p, "closeness").tolist() == pytest.approx(closeness(p).tolist())


def test_priorities_are_symmetric_in_the_sides():
    p = pred([0.2, 0.65, 0.9], [0.05, 0.1, 0.01])
    swapped = pred(1 - p.p_a, p.spread)
    assert uncertainty_priority(p).tolist() == pytest.approx(uncertainty_priority(swapped).tolist())


def test_equal_priorities_keep_their_positions():
    assert acquisition_order([0.3, 0.7, 0.3, 0.7, 0.1]).tolist() == [1, 3, 0, 2, 4]
    p = pred([0.5] * 6)
    assert acquisition_order(uncertainty_priority(p)).tolist() == list(range(6))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="same length"):
        uncertainty_priority(pred([0.5, 0.5], [0.1]))
    with pytest.raises(ValueError, match="finite"):
        uncertainty_priority(pred([np.nan]))
    with pytest.raises(ValueError, match="weights"):
        uncertainty_priority(pred([0.5]), closeness_weight=-1)
    with pytest.raises(ValueError, match="unknown acquisition"):
        priority_for(pred([0.5]), "entropy")
    with pytest.raises(ValueError, match="exploration"):
        mix_with_random([1.0], 1.5)
    with pytest.raises(ValueError, match="one group"):
        diversify([1.0, 2.0], ["x"])


def test_mix_with_random_is_seeded_and_puts_the_explored_share_first():
    priority = np.linspace(0, 1, 200)
    mixed = mix_with_random(priority, 0.25, seed=3)
    assert mixed.tolist() == mix_with_random(priority, 0.25, seed=3).tolist()
    explored = mixed > priority.max()
    assert 25 <= explored.sum() <= 75
    order = acquisition_order(mixed)
    assert explored[order[: explored.sum()]].all()
    assert (mixed[~explored] == priority[~explored]).all()  # the rest keeps its priorities
    assert mix_with_random(priority, 0.0).tolist() == priority.tolist()


def test_diversify_takes_each_prompts_best_pair_before_any_second_one():
    priority = [0.9, 0.8, 0.7, 0.2, 0.1, 0.6]
    groups = ["x", "x", "x", "y", "y", "z"]
    order = acquisition_order(diversify(priority, groups)).tolist()
    assert order == [0, 5, 3, 1, 4, 2]
