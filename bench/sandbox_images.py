"""Sandbox pipeline images for the offline benches, generated once and cached as ``.npz`` files.

    from bench.sandbox_images import cached_sandbox_images
    images = cached_sandbox_images(per_prompt=6, seed=0)     # {prompt: [HxWx3 uint8, ...]}, the 96 sandbox prompts

The images are exactly those of ``rewards.sandbox_experiment.generate_sandbox_images`` (the real sandbox pipeline,
seeded per image); the cache only saves the minute it takes to draw them again. Set ``BENCH_CACHE`` to move it
(default ``/tmp/bench-sandbox-cache``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from generators.sandbox import DEFAULT_GUIDANCE, DEFAULT_STEPS

CACHE = Path(os.environ.get("BENCH_CACHE", "/tmp/bench-sandbox-cache"))  # noqa: S108 - a re-creatable cache


def cached_sandbox_images(
    per_prompt: int, seed: int = 0, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE
) -> dict[str, list[np.ndarray]]:
    """``per_prompt`` images of each of the 96 sandbox prompts (with size words), from the cache when present."""
    from generators.sandbox.dataset import all_captions

    prompts = all_captions(with_sizes=True)
    path = CACHE / f"images-{per_prompt}-{seed}-{steps}-{guidance:g}.npz"
    if path.exists():
        stored = np.load(path)
        if list(stored["prompts"]) == prompts:
            pixels = stored["images"]
            return {p: list(pixels[i]) for i, p in enumerate(prompts)}
    from rewards.sandbox_experiment import generate_sandbox_images

    images = generate_sandbox_images(prompts, per_prompt, steps, guidance, seed)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, prompts=np.asarray(prompts), images=np.stack([np.stack(images[p]) for p in prompts]))
    tmp.replace(path)
    return images
