"""Automatic image metrics on features already computed: Fréchet distance, diversity among seeds, win rate, and
bootstrap intervals over prompts.

No Django and no torch (numpy only): the CLIP features come from ``rewards.clip_metrics``. Every metric here is
computed per prompt group where it can be, so that its interval resamples prompts (the unit a prompt set is drawn
in), never images of the same prompt independently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Estimate",
    "bootstrap",
    "clip_score_estimate",
    "diversity_estimate",
    "frechet_distance",
    "frechet_estimate",
    "mean_pairwise_cosine_distance",
    "paired_delta_estimate",
    "paired_gain_estimate",
    "win_rate_estimate",
]

DEFAULT_RESAMPLES = 1000


@dataclass(frozen=True)
class Estimate:
    """A metric's value on the whole sample, its percentile bootstrap interval over prompts (None when fewer than
    two prompts), and how many prompts (``n``) and items (images, pairs) it covers."""

    value: float
    low: float | None
    high: float | None
    n: int
    items: int

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "prompts": self.n, "items": self.items}


def bootstrap(
    groups: Sequence,
    statistic: Callable[[Sequence], float],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float | None, float | None]:
    """The percentile interval of ``statistic`` over ``resamples`` draws of ``groups`` with replacement (seeded).

    ``groups`` are the prompts' data (whatever ``statistic`` reads); fewer than two groups have no interval.
    """
    if len(groups) < 2 or resamples < 1:
        return None, None
    rng = np.random.default_rng(seed)
    values = np.empty(resamples, dtype=np.float64)
    for k in range(resamples):
        picks = rng.integers(0, len(groups), size=len(groups))
        values[k] = statistic([groups[i] for i in picks])
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


# ------------------------------------------------------------------------------------------------ CLIP score
def _clip_score_of(groups: Sequence[np.ndarray]) -> float:
    """torchmetrics' aggregate: max(mean of 100·cos over every image, 0) (the mean is clamped, not each image)."""
    values = np.concatenate([np.asarray(g, dtype=np.float64) for g in groups])
    return float(max(values.mean(), 0.0)) if len(values) else float("nan")


def clip_score_estimate(scores_by_prompt: Mapping[object, Sequence[float]], **kwargs) -> Estimate:
    """CLIP score as torchmetrics' ``CLIPScore`` reports it, from per-image ``100·cos(image, text)`` values grouped
    by prompt; the interval resamples prompts."""
    groups = [np.asarray(v, dtype=np.float64) for v in scores_by_prompt.values() if len(v)]
    low, high = bootstrap(groups, _clip_score_of, **kwargs)
    return Estimate(_clip_score_of(groups), low, high, len(groups), sum(len(g) for g in groups))


# ------------------------------------------------------------------------------------------------ Fréchet
@dataclass(frozen=True)
class _Gaussian:
    """A feature set's mean, the trace of its covariance and a factor ``F`` of it (``Fᵀ F`` = the covariance):
    the centred features over √(N−1) (N x D) when N ≤ D, else the covariance's symmetric square root (D x D)."""

    mean: np.ndarray
    trace: float
    factor: np.ndarray


def _gaussian(features: np.ndarray) -> _Gaussian:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least two feature vectors (an N x D array), got shape {x.shape}")
    mean = x.mean(axis=0)
    centred = (x - mean) / np.sqrt(x.shape[0] - 1)
    factor = centred if x.shape[0] <= x.shape[1] else _sqrt_psd(centred.T @ centred)
    return _Gaussian(mean, float(np.sum(centred * centred)), factor)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _frechet(a: _Gaussian, b: _Gaussian) -> float:
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature sizes differ: {a.mean.shape[0]} and {b.mean.shape[0]}")
    trace_sqrt = float(np.linalg.svd(a.factor @ b.factor.T, compute_uv=False).sum())
    diff = a.mean - b.mean
    return max(float(diff @ diff + a.trace + b.trace - 2.0 * trace_sqrt), 0.0)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (N x D and M x D):
    ``|mu_a - mu_b|² + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^½)``.

    With factors ``S_a = Aᵀ A`` and ``S_b = Bᵀ B`` (see :class:`_Gaussian`), ``S_a S_b`` has the nonzero
    eigenvalues of ``(A Bᵀ)(A Bᵀ)ᵀ``, so ``tr((S_a S_b)^½)`` is the sum of the singular values of ``A Bᵀ``, in
    float64: no complex round-off as with a general ``sqrtm``, singular covariances (fewer samples than
    dimensions) are fine, and with few samples in many dimensions (Inception's 2048) it costs an N x M product,
    not D x D eigen-decompositions.
    """
    return _frechet(_gaussian(features_a), _gaussian(features_b))


def frechet_estimate(features_by_prompt: Mapping[object, np.ndarray], reference: np.ndarray, **kwargs) -> Estimate:
    """Fréchet distance of a version's image features (grouped by prompt) to a fixed reference set's; the
    interval resamples the version's prompts (the reference stays fixed: it is the target, not a sample)."""
    groups = [np.asarray(f, dtype=np.float64) for f in features_by_prompt.values() if len(f)]
    target = _gaussian(reference)

    def statistic(chosen: Sequence[np.ndarray]) -> float:
        return _frechet(_gaussian(np.concatenate(chosen)), target)

    low, high = bootstrap(groups, statistic, **kwargs)
    return Estimate(statistic(groups), low, high, len(groups), sum(len(g) for g in groups))


# ------------------------------------------------------------------------------------------------ diversity
def mean_pairwise_cosine_distance(features: np.ndarray) -> float:
    """Mean of ``1 - cos(f_i, f_j)`` over every pair i < j of one prompt's image features (at least two)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"diversity needs at least two images of a prompt, got shape {x.shape}")
    unit = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    cos = unit @ unit.T
    upper = np.triu_indices(len(x), k=1)
    return float(np.mean(1.0 - cos[upper]))


def diversity_by_prompt(features_by_prompt: Mapping[object, np.ndarray]) -> dict[object, float]:
    """Each prompt's mean pairwise cosine distance among its seeds' images (prompts with one image left out)."""
    return {key: mean_pairwise_cosine_distance(f) for key, f in features_by_prompt.items() if len(np.asarray(f)) >= 2}


def _mean(groups: Sequence[float]) -> float:
    return float(np.mean(groups)) if len(groups) else float("nan")


def diversity_estimate(features_by_prompt: Mapping[object, np.ndarray], **kwargs) -> Estimate:
    """Diversity among a prompt's seeds (mean pairwise cosine distance of image features), averaged over prompts;
    0 when every seed gives the same image (mode collapse)."""
    values = list(diversity_by_prompt(features_by_prompt).values())
    low, high = bootstrap(values, _mean, **kwargs)
    images = sum(len(np.asarray(f)) for f in features_by_prompt.values() if len(np.asarray(f)) >= 2)
    return Estimate(_mean(values), low, high, len(values), images)


# ------------------------------------------------------------------------------------------------ win rate, deltas
def win_rate_estimate(pairs_by_prompt: Mapping[object, Sequence[tuple[float, float]]], **kwargs) -> Estimate:
    """How often a version's image beats its parent's of the same prompt and seed under a reward: each pair
    (version score, parent score) counts 1 for a win, 0.5 for a tie, 0 for a loss; averaged over every pair."""
    groups = [
        np.array([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs])
        for pairs in pairs_by_prompt.values()
        if len(pairs)
    ]

    def statistic(chosen: Sequence[np.ndarray]) -> float:
        return float(np.concatenate(chosen).mean()) if chosen else float("nan")

    low, high = bootstrap(groups, statistic, **kwargs)
    return Estimate(statistic(groups), low, high, len(groups), sum(len(g) for g in groups))


def paired_delta_estimate(
    version_by_prompt: Mapping[object, float], parent_by_prompt: Mapping[object, float], **kwargs
) -> Estimate:
    """The mean over prompts of (version's value − parent's value) on the prompts both have, with its interval."""
    deltas = [
        float(version_by_prompt[k]) - float(parent_by_prompt[k]) for k in version_by_prompt if k in parent_by_prompt
    ]
    low, high = bootstrap(deltas, _mean, **kwargs)
    return Estimate(_mean(deltas), low, high, len(deltas), len(deltas))


def paired_gain_estimate(
    points: Sequence[float], baseline_points: Sequence[float], prompts: Sequence[object], **kwargs
) -> Estimate:
    """How much a predictor gains over a baseline on the same pairs: the mean of (its points − the baseline's)
    over every pair (per-pair points, e.g. :func:`rewards.metrics.tie_aware_points`), its interval resampling the
    pairs' ``prompts`` (a prompt's pairs share images, so they are not independent)."""
    if not len(points) == len(baseline_points) == len(prompts):
        raise ValueError("points, baseline_points and prompts must have one entry per pair")
    difference = np.asarray(points, dtype=np.float64) - np.asarray(baseline_points, dtype=np.float64)
    by_prompt: dict[object, list[float]] = {}
    for prompt, value in zip(prompts, difference, strict=True):
        by_prompt.setdefault(prompt, []).append(float(value))
    groups = [np.asarray(values) for values in by_prompt.values()]

    def statistic(chosen: Sequence[np.ndarray]) -> float:
        return float(np.concatenate(chosen).mean()) if chosen else float("nan")

    low, high = bootstrap(groups, statistic, **kwargs)
    return Estimate(statistic(groups), low, high, len(groups), len(difference))


# ------------------------------------------------------------------------------------------------ the flag
def _clearly_above(estimate: Mapping, threshold: float) -> bool:
    """Above ``threshold`` by its interval's lower bound (by its value when it has no interval)."""
    low = estimate.get("low")
    return (low if low is not None else estimate["value"]) > threshold


def _clearly_below(estimate: Mapping, threshold: float) -> bool:
    high = estimate.get("high")
    return (high if high is not None else estimate["value"]) < threshold


def reward_gain_flag(
    win_rates: Mapping[str, Mapping], clip_score_delta: Mapping | None, diversity_delta: Mapping | None
) -> str:
    """Why a version is flagged, or "": it gains reward (a win rate against its parent whose 95% interval is above
    0.5 under some reward model) while losing diversity or CLIP score (a per-prompt delta against the parent whose
    interval is below 0). Estimates are dicts with ``value``, ``low``, ``high`` (``Estimate.as_dict``)."""
    gains = [name for name, estimate in win_rates.items() if _clearly_above(estimate, 0.5)]
    losses = [
        f"{label} {estimate['value']:+.3g}"
        for label, estimate in (("CLIP score", clip_score_delta), ("diversity", diversity_delta))
        if estimate is not None and _clearly_below(estimate, 0.0)
    ]
    if not gains or not losses:
        return ""
    rewards = ", ".join(f"{name} ({win_rates[name]['value']:.2f})" for name in gains)
    return f"gains reward against its parent (win rate under {rewards}) while losing {' and '.join(losses)}"
