"""Evaluation of pairwise preference predictions (PickScore's tie-aware protocol) and the human ceiling.

Inputs are plain sequences / numpy arrays: ``p_a`` is the predicted probability that image a wins
(softmax of the two scores), ``label_a`` the target for a: 1, 0 or 0.5 (tie).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .metric_stats import paired_gain_estimate

__all__ = [
    "DEFAULT_THRESHOLDS",
    "accuracy_gain",
    "choose_threshold",
    "decisive_accuracy",
    "evaluate_predictions",
    "expected_calibration_error",
    "human_ceiling",
    "log_loss",
    "pair_probabilities",
    "tie_aware_accuracy",
    "tie_aware_points",
    "votes_by_pair",
]

# Candidate tie thresholds on |p_a − p_b| (0 = never predict a tie).
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(x, 3) for x in np.linspace(0.0, 0.5, 51))
_EPS = 1e-7


def _outcome(label_a: np.ndarray) -> np.ndarray:
    """+1 when a wins, −1 when b wins, 0 for a tie."""
    return np.sign(np.asarray(label_a, dtype=np.float64) - 0.5).astype(np.int64)


def pair_probabilities(scores_a: Sequence[float], scores_b: Sequence[float]) -> np.ndarray:
    """P(a wins) = softmax(s_a, s_b)[0] = sigmoid(s_a − s_b)."""
    diff = np.asarray(scores_a, dtype=np.float64) - np.asarray(scores_b, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * diff))  # a numerically stable sigmoid


def tie_aware_points(p_a: Sequence[float], label_a: Sequence[float], threshold: float) -> np.ndarray:
    """Each pair's points under PickScore's protocol: a tie is predicted when |p_a − p_b| ≤ t; 1 for a match,
    0.5 when either side is a tie, 0 otherwise."""
    p = np.asarray(p_a, dtype=np.float64)
    predicted = np.where(np.abs(2 * p - 1) <= threshold, 0, np.sign(p - 0.5)).astype(np.int64)
    truth = _outcome(label_a)
    points = np.where((predicted == 0) | (truth == 0), 0.5, (predicted == truth).astype(np.float64))
    return np.where((predicted == 0) & (truth == 0), 1.0, points)


def tie_aware_accuracy(p_a: Sequence[float], label_a: Sequence[float], threshold: float) -> float:
    """PickScore's accuracy: the mean of :func:`tie_aware_points`; NaN with no pairs."""
    if not len(p_a):
        return math.nan
    return float(tie_aware_points(p_a, label_a, threshold).mean())


def choose_threshold(
    p_a: Sequence[float], label_a: Sequence[float], thresholds: Iterable[float] = DEFAULT_THRESHOLDS
) -> tuple[float, float]:
    """(threshold, accuracy) maximising :func:`tie_aware_accuracy`; the smallest threshold wins ties."""
    best_t, best_acc = 0.0, -1.0
    for t in sorted(thresholds):
        acc = tie_aware_accuracy(p_a, label_a, t)
        if acc > best_acc + 1e-12:
            best_t, best_acc = float(t), acc
    return best_t, best_acc


def accuracy_gain(
    p_a: Sequence[float],
    threshold: float,
    baseline_p_a: Sequence[float],
    baseline_threshold: float,
    label_a: Sequence[float],
    prompts: Sequence[object],
) -> dict[str, float | int | None]:
    """How far a model's tie-aware accuracy is above a baseline's (zero-shot) on the same pairs, each at its own
    threshold: ``value`` (a fraction: 0.1 is ten points), the 95% bootstrap interval over ``prompts`` (``low``,
    ``high``; None with fewer than two prompts), ``prompts`` and ``items`` (pairs)."""
    return paired_gain_estimate(
        tie_aware_points(p_a, label_a, threshold), tie_aware_points(baseline_p_a, label_a, baseline_threshold), prompts
    ).as_dict()


def decisive_accuracy(p_a: Sequence[float], label_a: Sequence[float]) -> float:
    """Accuracy on pairs whose label is not a tie (p_a = 0.5 exactly counts half); NaN if there are none."""
    p, truth = np.asarray(p_a, dtype=np.float64), _outcome(label_a)
    keep = truth != 0
    if not keep.any():
        return math.nan
    predicted = np.sign(p[keep] - 0.5)
    return float(np.where(predicted == 0, 0.5, (predicted == truth[keep]).astype(np.float64)).mean())


def log_loss(p_a: Sequence[float], label_a: Sequence[float]) -> float:
    """Mean cross-entropy −[y log p + (1 − y) log(1 − p)] with y = label_a (0.5 for ties), p clipped."""
    p = np.clip(np.asarray(p_a, dtype=np.float64), _EPS, 1 - _EPS)
    y = np.asarray(label_a, dtype=np.float64)
    if not len(p):
        return math.nan
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def expected_calibration_error(p_a: Sequence[float], label_a: Sequence[float], bins: int = 10) -> float:
    """ECE on decisive pairs: confidence max(p, 1 − p) in equal-width bins over [0.5, 1], |accuracy − confidence|
    weighted by bin size. NaN without decisive pairs."""
    p, truth = np.asarray(p_a, dtype=np.float64), _outcome(label_a)
    keep = truth != 0
    if not keep.any():
        return math.nan
    p, truth = p[keep], truth[keep]
    confidence = np.maximum(p, 1 - p)
    correct = (np.where(p >= 0.5, 1, -1) == truth).astype(np.float64)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def evaluate_predictions(p_a: Sequence[float], label_a: Sequence[float], threshold: float) -> dict[str, float]:
    """Every metric at once, for one split, at a threshold chosen elsewhere (on validation)."""
    truth = _outcome(label_a)
    return {
        "accuracy": tie_aware_accuracy(p_a, label_a, threshold),
        "decisive_accuracy": decisive_accuracy(p_a, label_a),
        "log_loss": log_loss(p_a, label_a),
        "ece": expected_calibration_error(p_a, label_a),
        "threshold": float(threshold),
        "pairs": int(len(truth)),
        "decisive_pairs": int((truth != 0).sum()),
    }


def votes_by_pair(pairs: Iterable[object]) -> dict[str, list[float]]:
    """label_a of each vote grouped by ``pair_key`` (objects with ``pair_key`` and ``label_a``; keyless skipped)."""
    grouped: dict[str, list[float]] = {}
    for pair in pairs:
        key = getattr(pair, "pair_key", None)
        if key is not None:
            grouped.setdefault(str(key), []).append(float(pair.label_a))
    return grouped


def human_ceiling(votes: Mapping[str, Sequence[float]]) -> dict[str, float | int]:
    """Leave-one-out human agreement on pairs with ≥ 2 votes.

    Each vote (label_a: 1, 0 or 0.5) is compared with the majority of the other votes on its pair (a, b, or a
    tie when tie votes lead or a and b are level) and scored like :func:`tie_aware_accuracy` (1 match, 0.5 if
    either is a tie, 0 otherwise). ``decisive_agreement`` counts only decisive votes against a decisive majority.
    """
    points, decisive = [], []
    pairs = 0
    for labels in votes.values():
        outcomes = [int(o) for o in _outcome(np.asarray(labels, dtype=np.float64))]
        if len(outcomes) < 2:
            continue
        pairs += 1
        for i, vote in enumerate(outcomes):
            counts = Counter(outcomes[:i] + outcomes[i + 1 :])
            if counts[1] > counts[-1] and counts[1] >= counts[0]:
                majority = 1
            elif counts[-1] > counts[1] and counts[-1] >= counts[0]:
                majority = -1
            else:
                majority = 0
            if vote == 0 or majority == 0:
                points.append(1.0 if vote == majority else 0.5)
            else:
                points.append(float(vote == majority))
                decisive.append(float(vote == majority))
    return {
        "agreement": float(np.mean(points)) if points else math.nan,
        "decisive_agreement": float(np.mean(decisive)) if decisive else math.nan,
        "pairs": pairs,
        "votes": len(points),
    }
