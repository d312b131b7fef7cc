"""Seeded procedural dataset of captioned 32x32 RGB images of coloured shapes.

Every sample is a pure function of ``(seed, index)``: the same seed always gives
the same images and captions, on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 32
SUPERSAMPLE = 4
BACKGROUND: tuple[int, int, int] = (16, 16, 16)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 235),
    "yellow": (235, 220, 50),
    "purple": (150, 60, 205),
    "orange": (245, 140, 30),
    "cyan": (40, 210, 220),
    "white": (235, 235, 235),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
SIZE_WORDS: tuple[str, ...] = ("small", "large")
SIZE_CLASSES: tuple[str, ...] = ("small", "medium", "large")
# Bounding-box side in pixels (inclusive ranges) for each size class.
SIDE_RANGES: dict[str, tuple[int, int]] = {"small": (10, 14), "medium": (15, 19), "large": (20, 24)}
ARTICLES: tuple[str, ...] = ("a", "an")
VOCABULARY: tuple[str, ...] = ARTICLES + SIZE_WORDS + COLOUR_NAMES + SHAPES
COLOUR_JITTER = 12
SIZE_WORD_PROBABILITY = 0.5


@dataclass(frozen=True)
class Caption:
    """Parsed content of a caption; ``size`` is None when the caption gives none."""

    colour: str | None
    shape: str | None
    size: str | None = None


@dataclass(frozen=True)
class Sample:
    """One rendered image with its caption and ground-truth attributes."""

    image: np.ndarray
    caption: str
    colour: str
    shape: str
    size_class: str
    side: int


def make_caption(colour: str, shape: str, size: str | None = None) -> str:
    """Build a caption such as ``"a large blue triangle"`` or ``"an orange cross"``."""
    words = [w for w in (size, colour, shape) if w]
    article = "an" if words[0][0] in "aeiou" else "a"
    return " ".join([article, *words])


def parse_caption(caption: str) -> Caption:
    """Extract colour, shape and size words from a free-form caption (case-insensitive)."""
    words = caption.lower().replace(",", " ").replace(".", " ").split()
    colour = next((w for w in words if w in COLOURS), None)
    shape = next((w for w in words if w in SHAPES), None)
    size = next((w for w in words if w in SIZE_WORDS), None)
    return Caption(colour=colour, shape=shape, size=size)


def all_captions(with_sizes: bool = False) -> list[str]:
    """Every colour x shape caption (optionally also with each size word)."""
    sizes: tuple[str | None, ...] = (None, *SIZE_WORDS) if with_sizes else (None,)
    return [make_caption(c, s, z) for z in sizes for c in COLOUR_NAMES for s in SHAPES]


def shape_mask(shape: str, side: float, centre: tuple[float, float], size: int = IMAGE_SIZE) -> np.ndarray:
    """Anti-aliased coverage map in [0, 1] of ``shape`` with bounding box ``side`` at ``centre`` (x, y)."""
    n = size * SUPERSAMPLE
    coords = (np.arange(n, dtype=np.float64) + 0.5) / SUPERSAMPLE
    x = coords[None, :] - centre[0]
    y = coords[:, None] - centre[1]
    r = side / 2.0
    ax, ay = np.abs(x), np.abs(y)
    if shape == "circle":
        inside = x**2 + y**2 <= r**2
    elif shape == "square":
        inside = (ax <= r) & (ay <= r)
    elif shape == "triangle":  # pointing up: apex at the top, base at the bottom
        inside = (ay <= r) & (ax <= (y + r) / 2.0)
    elif shape == "cross":
        arm = r / 3.0
        inside = ((ax <= arm) & (ay <= r)) | ((ay <= arm) & (ax <= r))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def render(
    shape: str,
    rgb: tuple[int, int, int],
    side: float,
    centre: tuple[float, float] | None = None,
    size: int = IMAGE_SIZE,
) -> np.ndarray:
    """Render one shape on the plain background as an HxWx3 uint8 array."""
    centre = centre or (size / 2.0, size / 2.0)
    alpha = shape_mask(shape, side, centre, size)[..., None]
    image = np.asarray(BACKGROUND, dtype=np.float64) * (1 - alpha) + np.asarray(rgb, dtype=np.float64) * alpha
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


class SandboxDataset:
    """Indexable, deterministic dataset: sample ``i`` depends only on ``(seed, i)``."""

    def __init__(self, length: int, seed: int = 0, size_word_probability: float = SIZE_WORD_PROBABILITY):
        self.length = length
        self.seed = seed
        self.size_word_probability = size_word_probability

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        colour = COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]
        shape = SHAPES[rng.integers(len(SHAPES))]
        size_class = SIZE_CLASSES[rng.integers(len(SIZE_CLASSES))]
        low, high = SIDE_RANGES[size_class]
        side = int(rng.integers(low, high + 1))
        slack = min(4.0, (IMAGE_SIZE - side) / 2.0 - 1.0)
        centre = tuple(IMAGE_SIZE / 2.0 + rng.uniform(-slack, slack, size=2))
        jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
        rgb = tuple(int(v) for v in np.clip(np.asarray(COLOURS[colour]) + jitter, 0, 255))
        mention = size_class in SIZE_WORDS and rng.random() < self.size_word_probability
        caption = make_caption(colour, shape, size_class if mention else None)
        image = render(shape, rgb, side, centre)  # type: ignore[arg-type]
        return Sample(image=image, caption=caption, colour=colour, shape=shape, size_class=size_class, side=side)

    def arrays(self) -> tuple[np.ndarray, list[Sample]]:
        """All images stacked as an (N, H, W, 3) uint8 array, plus the samples."""
        samples = [self[i] for i in range(self.length)]
        return np.stack([s.image for s in samples]), samples
