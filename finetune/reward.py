"""Reward callables: ``(prompts, images) -> sequence of floats``, run in a worker thread while sampling goes on.

Any callable of that form is a reward (a reward model's scorer, zero-shot CLIP, a sandbox oracle); a per-image
function ``(prompt, image) -> float`` such as ``generators.sandbox.oracles.area_reward`` becomes one with
:func:`per_image`. A reward that raises, returns the wrong number of values or non-finite values becomes
:class:`core.jobs.JobFailed` with a message that says so. :class:`WeightedRewardMix` turns several rewards (one
reward model per criterion) into one: the weighted sum of their standardised scores.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.jobs import JobFailed

RewardFn = Callable[[list[str], list[Image.Image]], Sequence[float]]


def per_image(fn: Callable[[str, Image.Image], float]) -> RewardFn:
    """Turn a per-image reward ``fn(prompt, image)`` into a batch reward."""

    def batch(prompts: list[str], images: list[Image.Image]) -> list[float]:
        return [float(fn(p, im)) for p, im in zip(prompts, images, strict=True)]

    batch.__name__ = getattr(fn, "__name__", "reward")
    return batch


def call_reward(fn: RewardFn, prompts: list[str], images: list[Image.Image], what: str = "reward") -> np.ndarray:
    """Call ``fn`` and check its answer; any problem is a :class:`JobFailed` naming the function."""
    name = getattr(fn, "__name__", type(fn).__name__)
    try:
        values = fn(list(prompts), list(images))
        array = np.asarray([float(v) for v in values], dtype=np.float64)
    except JobFailed:
        raise
    except Exception as exc:
        raise JobFailed(f"The {what} function {name!r} failed: {type(exc).__name__}: {exc}") from exc
    if array.shape != (len(prompts),):
        raise JobFailed(f"The {what} function {name!r} returned {array.size} values for {len(prompts)} images.")
    if not np.isfinite(array).all():
        raise JobFailed(f"The {what} function {name!r} returned a non-finite value (NaN or infinity).")
    return array


class RewardPool:
    """Computes rewards in background threads so that the next batch can be sampled meanwhile."""

    def __init__(self, fn: RewardFn, workers: int = 1):
        self.fn = fn
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ddpo-reward")

    def submit(self, prompts: list[str], images: list[Image.Image]) -> Future:
        return self.executor.submit(call_reward, self.fn, prompts, images)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> RewardPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class ScoreStats:
    """One reward's score statistics, by which a mix standardises it: ``(score - mean) / std``."""

    mean: float
    std: float

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std}


class WeightedRewardMix:
    """A weighted mix of rewards (e.g. one reward model per criterion): ``Σ wᵢ · (sᵢ − μᵢ) / σᵢ``.

    Reward models' scores live on unrelated scales (a logit scale learnt per model), so each is standardised before
    weighting. The statistics ``(μᵢ, σᵢ)`` are taken once, from the first batch the mix scores, and then frozen (so
    rewards stay comparable across epochs, and the eval reward before and after training means the same thing). In
    the DDPO trainer that first batch is the parent's deterministic evaluation samples (η = 0, fixed seeds): the
    same images on every attempt. ``stats`` given (e.g. recorded by an earlier attempt of the run) skips that
    calibration; ``on_calibrated(stats)`` is called once when they are taken, so the caller can record them. A
    reward whose first-batch scores do not vary (a batch of one) is scaled by 1.
    """

    def __init__(
        self,
        rewards: Sequence[RewardFn],
        weights: Sequence[float],
        *,
        stats: Sequence[ScoreStats] | None = None,
        on_calibrated: Callable[[list[ScoreStats]], None] | None = None,
    ) -> None:
        if not rewards or len(rewards) != len(weights):
            raise ValueError("a mix needs one weight per reward, and at least one reward")
        if not all(np.isfinite(w) for w in weights):
            raise ValueError("weights must be finite")
        if stats is not None and len(stats) != len(rewards):
            raise ValueError("stats: one entry per reward")
        self.rewards, self.weights = list(rewards), [float(w) for w in weights]
        self.stats: list[ScoreStats] | None = list(stats) if stats is not None else None
        self.on_calibrated = on_calibrated
        self._lock = threading.Lock()
        self.__name__ = "weighted_reward_mix"

    def __call__(self, prompts: list[str], images: list[Image.Image]) -> np.ndarray:
        scores = [
            call_reward(fn, prompts, images, what=f"mixed reward {index}") for index, fn in enumerate(self.rewards)
        ]
        with self._lock:
            if self.stats is None:
                self.stats = [_stats_of(values) for values in scores]
                if self.on_calibrated is not None:
                    self.on_calibrated(list(self.stats))
            stats = self.stats
        return sum(
            (w * (values - s.mean) / s.std for w, values, s in zip(self.weights, scores, stats, strict=True)),
            start=np.zeros(len(prompts)),
        )


def _stats_of(values: np.ndarray) -> ScoreStats:
    std = float(values.std())
    return ScoreStats(mean=float(values.mean()), std=std if std > 1e-8 else 1.0)
