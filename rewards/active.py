"""Active pair selection: which unvoted pairs annotators should see first (higher priority = ask first).

Input: a reward model's prediction for each candidate pair, ``p_a`` (the ensemble's mean, calibrated, probability
that image a wins) and ``spread`` (the standard deviation of the members' ``p_a``): a
``rewards.quick.PairPrediction`` or anything with those two arrays. Output: one float per pair. Every function is
deterministic (a seed where there is randomness), and :func:`acquisition_order` breaks equal priorities by the
pair's position, so the same inputs always give the same order. No Django imports: the refit job writes the
priorities into the pairs and the hand-out orders by them.

Two sources of uncertainty are combined:

- **closeness**: ``1 − |2·p_a − 1|`` (1 at p_a = 0.5, 0 when the model is sure). Near-ties the model cannot yet
  separate, but also pairs that are ties for the annotators themselves (asking those again teaches nothing).
- **disagreement** (BALD-like): the information a vote brings about the model, ≈ the mutual information between
  the label and the ensemble member, approximated from the mean and the spread by a second-order expansion of the
  binary entropy: ``MI ≈ spread² / (2·p_a·(1 − p_a))`` nats, capped at the entropy ``H(p_a)``; divided by ln 2
  so it lies in [0, 1]. Large only where the members disagree, so it prefers what the model does not know over
  what nobody can know.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Protocol

import numpy as np

__all__ = [
    "ACQUISITIONS",
    "PredictionLike",
    "acquisition_order",
    "bald_score",
    "closeness",
    "diversify",
    "mix_with_random",
    "priority_for",
    "uncertainty_priority",
]

_EPS = 1e-6


class PredictionLike(Protocol):
    """What the acquisition functions read: ``rewards.quick.PairPrediction`` satisfies it."""

    p_a: np.ndarray
    spread: np.ndarray


def _arrays(pred: PredictionLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred.p_a, dtype=np.float64).reshape(-1)
    spread = np.asarray(pred.spread, dtype=np.float64).reshape(-1)
    if p.shape != spread.shape:
        raise ValueError(f"p_a and spread must have the same length, got {p.shape[0]} and {spread.shape[0]}")
    if not (np.isfinite(p).all() and np.isfinite(spread).all()):
        raise ValueError("p_a and spread must be finite")
    return np.clip(p, 0.0, 1.0), np.clip(spread, 0.0, None)


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1 - _EPS)
    return -(q * np.log2(q) + (1 - q) * np.log2(1 - q))


def closeness(pred: PredictionLike) -> np.ndarray:
    """``1 − |2·p_a − 1|``: 1 when the model's mean is a coin flip, 0 when it is sure."""
    p, _ = _arrays(pred)
    return 1.0 - np.abs(2.0 * p - 1.0)


def bald_score(pred: PredictionLike) -> np.ndarray:
    """Approximate BALD (mutual information between the vote and the ensemble member), in bits, in [0, 1]."""
    p, spread = _arrays(pred)
    q = np.clip(p, _EPS, 1 - _EPS)
    mutual = spread**2 / (2.0 * q * (1.0 - q)) / math.log(2.0)
    return np.minimum(mutual, _entropy_bits(p))


def uncertainty_priority(
    pred: PredictionLike, *, closeness_weight: float = 1.0, disagreement_weight: float = 1.0
) -> np.ndarray:
    """Higher = ask first: ``closeness_weight · closeness + disagreement_weight · bald_score`` (each in [0, 1]).

    With the defaults a pair the model calls a coin flip and a pair whose members disagree both come first;
    ``closeness_weight=0`` is pure disagreement (BALD), ``disagreement_weight=0`` least-confidence sampling.
    """
    if closeness_weight < 0 or disagreement_weight < 0:
        raise ValueError("weights must be ≥ 0")
    return closeness_weight * closeness(pred) + disagreement_weight * bald_score(pred)


def mix_with_random(priority: Sequence[float], exploration: float, seed: int = 0) -> np.ndarray:
    """Exploration: a seeded random share ``exploration`` of the pairs gets a priority above every other pair
    (in random order among themselves), the rest keeps its order. ``exploration=0`` returns the priorities."""
    values = np.asarray(priority, dtype=np.float64).reshape(-1)
    if not 0.0 <= exploration <= 1.0:
        raise ValueError("exploration must be in [0, 1]")
    if exploration == 0.0 or not len(values):
        return values.copy()
    rng = np.random.default_rng(seed)
    chosen = rng.random(len(values)) < exploration
    top = values.max() + 1.0
    out = values.copy()
    out[chosen] = top + rng.random(int(chosen.sum()))
    return out


def diversify(priority: Sequence[float], groups: Sequence[Hashable]) -> np.ndarray:
    """Spread the order across groups (e.g. prompts): every group's best pair first (best of those first), then
    every group's second best, and so on. Returns priorities that give that order (ties: the pair's position)."""
    values = np.asarray(priority, dtype=np.float64).reshape(-1)
    if len(groups) != len(values):
        raise ValueError("one group per pair is needed")
    order = acquisition_order(values)
    rank_in_group = np.empty(len(values), dtype=np.int64)
    seen: dict[Hashable, int] = {}
    for index in order:
        rank_in_group[index] = seen.get(groups[index], 0)
        seen[groups[index]] = rank_in_group[index] + 1
    # Lexicographic (rank within its group, then the original order) as one decreasing float.
    position = np.empty(len(values), dtype=np.int64)
    position[order] = np.arange(len(values))
    key = rank_in_group * len(values) + position
    return -key.astype(np.float64)


def acquisition_order(priority: Sequence[float]) -> np.ndarray:
    """Indices from the highest priority to the lowest; equal priorities keep their positions (stable)."""
    values = np.asarray(priority, dtype=np.float64).reshape(-1)
    return np.argsort(-values, kind="stable")


ACQUISITIONS = ("uncertainty", "bald", "closeness")


def priority_for(pred: PredictionLike, acquisition: str = "uncertainty") -> np.ndarray:
    """Priorities by name: ``uncertainty`` (:func:`uncertainty_priority`), ``bald`` (disagreement only) or
    ``closeness`` (least confidence only)."""
    if acquisition == "uncertainty":
        return uncertainty_priority(pred)
    if acquisition == "bald":
        return bald_score(pred)
    if acquisition == "closeness":
        return closeness(pred)
    raise ValueError(f"unknown acquisition {acquisition!r}: expected one of {', '.join(ACQUISITIONS)}")
