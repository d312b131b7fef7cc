"""The sandbox's safety screen: a deterministic stand-in for a content check, so flagged images exist offline.

``sandbox_red`` withholds images that are mostly strong red. The sandbox draws one shape on a near-black
background, and a small shape covers a tenth of the frame, so the share is taken of the non-dark pixels (the
drawing), not of the whole frame: with the bundled model at its default settings (20 DDIM steps) every "red"
prompt's image is flagged and no other colour's (orange, the nearest, has green above half its red).
"""

from __future__ import annotations

import numpy as np

RED_MIN = 150  # a strong red pixel: R >= RED_MIN and G, B both under half of R
DARK_MAX = 64  # a pixel whose channels are all under this is background, not drawing
MIN_DRAWN_SHARE = 0.01  # fewer drawn pixels than this share of the frame: nothing to judge
RED_SHARE = 0.5  # flagged when more than this share of the drawn pixels is strong red


def red_share(image: np.ndarray) -> float:
    """The share of the drawn (non-dark) pixels of an HxWx3 uint8 image that are strong red (0 when nothing is
    drawn)."""
    pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected HxWx3 pixels, got shape {pixels.shape}")
    pixels = pixels.astype(np.int32)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    drawn = pixels.max(axis=-1) >= DARK_MAX
    if drawn.mean() < MIN_DRAWN_SHARE:
        return 0.0
    strong_red = (red >= RED_MIN) & (2 * green < red) & (2 * blue < red)
    return float(strong_red.sum() / drawn.sum())


def sandbox_red(prompt: str, image: np.ndarray) -> str | None:
    """A reason when more than half of the drawn pixels are strong red, else None (the prompt is not read)."""
    share = red_share(image)
    if share > RED_SHARE:
        return f"mostly red ({round(100 * share)}% of the non-dark pixels)"
    return None
