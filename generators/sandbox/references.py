"""Ground-truth images of a sandbox caption: the world's own renders, a reference set for Fréchet distance.

No Django. Each image is drawn from the distribution the sandbox was trained on, given what the caption says:
its colour (with the dataset's colour jitter), its shape, its size class (any of the three when the caption gives
none) and the dataset's position jitter. Deterministic in ``(caption, seed)``.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .dataset import COLOUR_JITTER, COLOURS, IMAGE_SIZE, SIDE_RANGES, SIZE_CLASSES, parse_caption, render


class NotASandboxCaption(ValueError):
    """The caption names no sandbox colour or shape."""


def ground_truth_images(caption: str, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` HxWx3 uint8 renders of what ``caption`` describes."""
    parsed = parse_caption(caption)
    if parsed.colour is None or parsed.shape is None:
        raise NotASandboxCaption(f"{caption!r} names no sandbox colour and shape")
    digest = int.from_bytes(hashlib.sha256(caption.encode()).digest()[:8], "big")
    rng = np.random.default_rng([seed, digest])
    images = []
    for _ in range(count):
        size_class = parsed.size or SIZE_CLASSES[rng.integers(len(SIZE_CLASSES))]
        low, high = SIDE_RANGES[size_class]
        side = int(rng.integers(low, high + 1))
        slack = min(4.0, (IMAGE_SIZE - side) / 2.0 - 1.0)
        centre = tuple(IMAGE_SIZE / 2.0 + rng.uniform(-slack, slack, size=2))
        jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
        rgb = tuple(int(v) for v in np.clip(np.asarray(COLOURS[parsed.colour]) + jitter, 0, 255))
        images.append(render(parsed.shape, rgb, side, centre))  # type: ignore[arg-type]
    return images
