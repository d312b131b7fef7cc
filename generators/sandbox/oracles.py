"""Deterministic pixel oracles: pure functions of (pixels, prompt).

Images may be PIL images or HxWx3 uint8 arrays. The background is estimated from
the image border, the foreground is whatever differs clearly from it.
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache

import numpy as np
from PIL import Image

from .dataset import COLOURS, SHAPES, parse_caption, shape_mask

ImageLike = Image.Image | np.ndarray

MIN_CONTRAST = 30.0  # minimum RGB distance from the background to count as foreground
TEMPLATE_SIZE = 16
MAX_AREA_FRACTION = 0.5625  # the largest dataset shape: a 24x24 square in a 32x32 image
_PALETTE_NAMES = tuple(COLOURS)
_PALETTE = np.asarray([COLOURS[c] for c in _PALETTE_NAMES], dtype=np.float64)


def to_array(image: ImageLike) -> np.ndarray:
    """Convert to an HxWx3 float64 array with values in [0, 255]."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected HxWx3 pixels, got shape {array.shape}")
    return array.astype(np.float64)


def _background(pixels: np.ndarray) -> np.ndarray:
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.median(border, axis=0)


def _strength(pixels: np.ndarray) -> np.ndarray:
    """Per-pixel RGB distance from the estimated background colour."""
    return np.linalg.norm(pixels - _background(pixels), axis=2)


def _threshold(strength: np.ndarray) -> float:
    return max(MIN_CONTRAST, 0.5 * float(np.percentile(strength, 99)))


def foreground_mask(image: ImageLike) -> np.ndarray:
    """Boolean HxW mask of pixels that belong to the drawn shape(s)."""
    strength = _strength(to_array(image))
    return strength >= _threshold(strength)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of a boolean mask (empty mask stays empty)."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    best, best_size, current = 0, 0, 0
    height, width = mask.shape
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if labels[y0, x0]:
            continue
        current += 1
        labels[y0, x0] = current
        queue, size = deque([(y0, x0)]), 0
        while queue:
            y, x = queue.popleft()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = current
                    queue.append((ny, nx))
        if size > best_size:
            best, best_size = current, size
    return labels == best if best else np.zeros_like(mask)


def shape_area_fraction(image: ImageLike) -> float:
    """Fraction of the image's pixels that are foreground, in [0, 1]."""
    return float(foreground_mask(image).mean())


def shape_colour_rgb(image: ImageLike) -> np.ndarray | None:
    """Mean RGB of the shape's core pixels (the most saturated ones), or None if nothing is drawn."""
    pixels = to_array(image)
    strength = _strength(pixels)
    if strength.max() < MIN_CONTRAST:
        return None
    core = strength >= max(MIN_CONTRAST, 0.75 * float(np.percentile(strength, 99)))
    return pixels[core].mean(axis=0)


def dominant_shape_colour(image: ImageLike) -> str | None:
    """Name of the palette colour closest to the shape's colour (None for an empty image)."""
    rgb = shape_colour_rgb(image)
    if rgb is None:
        return None
    return _PALETTE_NAMES[int(np.argmin(np.linalg.norm(_PALETTE - rgb, axis=1)))]


@lru_cache(maxsize=1)
def _templates() -> dict[str, np.ndarray]:
    """Binary masks of each shape filling a TEMPLATE_SIZE square."""
    half = TEMPLATE_SIZE / 2.0
    return {s: shape_mask(s, TEMPLATE_SIZE, (half, half), TEMPLATE_SIZE) >= 0.5 for s in SHAPES}


def shape_scores(image: ImageLike) -> dict[str, float]:
    """IoU of the largest shape (cropped to its bounding box, resized) with each shape template."""
    mask = _largest_component(foreground_mask(image))
    if not mask.any():
        return {s: 0.0 for s in SHAPES}
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32)
    resized = Image.fromarray(crop).resize((TEMPLATE_SIZE, TEMPLATE_SIZE), Image.Resampling.BILINEAR)
    binary = np.asarray(resized) >= 0.5
    scores = {}
    for name, template in _templates().items():
        union = np.logical_or(binary, template).sum()
        scores[name] = float(np.logical_and(binary, template).sum() / union) if union else 0.0
    return scores


def shape_of(image: ImageLike) -> str | None:
    """Classify the drawn shape by template matching (None for an empty image)."""
    scores = shape_scores(image)
    best = max(scores, key=scores.__getitem__)
    return best if scores[best] > 0 else None


def colour_matches(prompt: str, image: ImageLike) -> bool:
    """True when the shape's colour is the colour named in the prompt."""
    wanted = parse_caption(prompt).colour
    return wanted is not None and dominant_shape_colour(image) == wanted


def shape_matches(prompt: str, image: ImageLike) -> bool:
    """True when the drawn shape is the shape named in the prompt."""
    wanted = parse_caption(prompt).shape
    return wanted is not None and shape_of(image) == wanted


def colour_reward(prompt: str, image: ImageLike) -> float:
    """Continuous reward in [0, 1]: 1 when the shape has exactly the prompt's colour."""
    wanted = parse_caption(prompt).colour
    rgb = shape_colour_rgb(image)
    if wanted is None or rgb is None:
        return 0.0
    distance = float(np.linalg.norm(rgb - np.asarray(COLOURS[wanted], dtype=np.float64)))
    return max(0.0, 1.0 - distance / 200.0)


def area_reward(prompt: str, image: ImageLike) -> float:
    """Reward in [0, 1] growing with the shape's area (1 at the dataset's largest square)."""
    del prompt  # the reward ignores the prompt; kept for the common (prompt, image) signature
    return min(1.0, shape_area_fraction(image) / MAX_AREA_FRACTION)


def shape_reward(prompt: str, image: ImageLike) -> float:
    """Reward in [0, 1]: template IoU of the drawn shape with the prompt's shape."""
    wanted = parse_caption(prompt).shape
    return shape_scores(image).get(wanted, 0.0) if wanted else 0.0


# -- preferences that no caption describes (the reward-curve bench's oracles) ---------------------------------------
# Each is scaled so that images of the same prompt differ by more than a simulated annotator's tie margin (0.05)
# in most pairs: on 576 images of the sandbox pipeline (96 prompts x 6 seeds, 20 steps) the share of within-prompt
# pairs closer than 0.05 is 0.21 (centred), about 0.45 (even) and 0.32 (crisp).

EVEN_SPREAD_LOW, EVEN_SPREAD_RANGE = 10.0, 20.0  # RGB standard deviation of the shape's pixels: best, then 0 at +20
CRISP_LOW = 0.6  # crispness (template IoU less stray share) at which the reward reaches 0


def _main_shape(image: ImageLike) -> tuple[np.ndarray, np.ndarray]:
    """The foreground mask and its largest component (the drawn shape)."""
    mask = foreground_mask(image)
    return mask, _largest_component(mask)


def centred_reward(prompt: str, image: ImageLike) -> float:
    """Reward in [0, 1]: 1 when the shape's centroid is at the image centre, 0 at a quarter of the side or more."""
    del prompt
    _, shape = _main_shape(image)
    if not shape.any():
        return 0.0
    ys, xs = np.nonzero(shape)
    height, width = shape.shape
    distance = float(np.hypot(ys.mean() - (height - 1) / 2.0, xs.mean() - (width - 1) / 2.0))
    return max(0.0, 1.0 - distance / (height / 4.0))


def even_reward(prompt: str, image: ImageLike) -> float:
    """Colour quality in [0, 1]: an evenly coloured shape (small spread of its pixels' RGB values) scores high."""
    del prompt
    _, shape = _main_shape(image)
    if not shape.any():
        return 0.0
    spread = float(to_array(image)[shape].std(axis=0).mean())
    return float(np.clip(1.0 - (spread - EVEN_SPREAD_LOW) / EVEN_SPREAD_RANGE, 0.0, 1.0))


def crisp_reward(prompt: str, image: ImageLike) -> float:
    """Shape quality in [0, 1]: a regular shape (best IoU with any template) with no stray blobs beside it."""
    del prompt
    mask, shape = _main_shape(image)
    if not shape.any():
        return 0.0
    stray = 1.0 - float(shape.sum()) / float(mask.sum())
    crispness = max(shape_scores(image).values()) - stray
    return float(np.clip((crispness - CRISP_LOW) / (1.0 - CRISP_LOW), 0.0, 1.0))


BALANCED_AREA = 0.2  # the shape's share of the frame that `balanced` likes best


def balanced_reward(prompt: str, image: ImageLike) -> float:
    """Size fit in [0, 1]: 1 when the shape fills a fifth of the frame, less for smaller and for larger shapes.

    Unlike ``area`` it is not monotone: within a prompt that asks for a large shape the smaller image wins, within
    one that asks for a small shape the larger one, so a score linear in the image's features cannot follow it.
    """
    del prompt
    _, shape = _main_shape(image)
    if not shape.any():
        return 0.0
    return float(max(0.0, 1.0 - abs(float(shape.mean()) - BALANCED_AREA) / BALANCED_AREA))


def high_reward(prompt: str, image: ImageLike) -> float:
    """Placement in [0, 1]: a shape whose centroid sits higher in the frame (more room below it) scores higher
    (1 at a quarter of the height from the top, 0 at three quarters)."""
    del prompt
    _, shape = _main_shape(image)
    if not shape.any():
        return 0.0
    height = shape.shape[0]
    centre_y = float(np.nonzero(shape)[0].mean())
    return float(np.clip(1.0 - (centre_y - height / 4.0) / (height / 2.0), 0.0, 1.0))
