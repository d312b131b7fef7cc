"""Reward callables: ``(prompts, images) -> sequence of floats``, run in a worker thread while sampling goes on.

Any callable of that form is a reward (a reward model's scorer, zero-shot CLIP, a sandbox oracle); a per-image
function ``(prompt, image) -> float`` such as ``generators.sandbox.oracles.area_reward`` becomes one with
:func:`per_image`. A reward that raises, returns the wrong number of values or non-finite values becomes
:class:`core.jobs.JobFailed` with a message that says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

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
