"""The invisible watermark of generated images: the platform instance and the image id, DWT-DCT-SVD coded.

No Django here. The block coding is invisible-watermark's ``dwtDctSvd`` method (``imwatermark.dwtDctSvd``:
haar DWT of a chroma channel, 4×4 blocks of its approximation band, DCT of each block, the largest singular
value quantised to ``scale`` so that its remainder says the bit), vectorised over all blocks at once: the
package loops over blocks in Python (about a second per 512×512 image here) and its package import loads
torch, which a web process must not. ``tests/generators/test_watermark.py`` checks that both code the same
blocks to the same values. Deviations from the package, each for a measured reason (docs/benchmarks.md):

- ``dwtDctSvd`` rather than SDXL's ``dwtDct``: on textured images ``dwtDct`` decodes wrong bits on clean,
  unattacked images (its "largest coefficient" moves when it is quantised), which cannot meet 99 % detection.
- The colour conversion is done in floating point and rounded once (the package writes the inverse DWT back
  into a uint8 YUV array, which truncates and wraps around near 0 and 255), and both chroma channels carry
  the mark (the package's loop stops before V).
- Bit ``k`` lives in the blocks whose (row mod 8, column mod 10) is ``divmod(k, 10)``, a tile rather than the
  package's running count, so a cropped image can be searched for the tile's position (``detect``).

The payload is 80 bits: instance (16) + image id (32) + CRC-32 of both (32), whitened with a fixed key so
that flat or empty images (all bits equal) never read as a valid mark. A random image passes the check with
probability 2⁻³² per position tried.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pywt
from PIL import Image

SCALE = 36.0  # the package's default quantisation step for dwtDctSvd
BLOCK = 4
CHANNELS = (1, 2)  # U and V of YUV
TILE_ROWS, TILE_COLS = 8, 10
PAYLOAD_BITS = TILE_ROWS * TILE_COLS  # 80
MIN_PIXELS = 256 * 256  # the package's own lower bound; smaller images are not marked
MIN_DETECT_SIDE = 128  # a (cropped, downscaled) copy is read down to this side
MAX_UPSCALED_SIDE = 4096
MAX_INSTANCE = 2**16 - 1
MAX_IMAGE_ID = 2**32 - 1
_CRC_PREFIX = b"imagerlhf-watermark-1"
_WHITENING = np.unpackbits(np.frombuffer(zlib.crc32(b"w").to_bytes(4, "big") * 3, dtype=np.uint8)[:10])
_SEARCH_WINDOW = 256  # pixels: the central window searched for a crop's offset
_OFFSETS = range(8)
_DCT = np.array(
    [[np.sqrt((1 if k == 0 else 2) / BLOCK) * np.cos(np.pi * (2 * n + 1) * k / (2 * BLOCK)) for n in range(BLOCK)]
     for k in range(BLOCK)]
)  # fmt: skip


@dataclass(frozen=True)
class Mark:
    """A decoded watermark: whose platform instance, which image, and how it was found."""

    instance: int
    image_id: int
    how: str  # "as is", "offset (dy, dx) …", "rescaled ×2 …"
    margin: float  # mean distance of the bits' vote shares from 0.5 (0: coin flips, 0.5: unanimous)


def can_mark(width: int, height: int) -> bool:
    """Whether an image of this size is large enough to carry the mark (the package's bound: 256×256 pixels)."""
    return width * height >= MIN_PIXELS and min(width, height) >= 8 * TILE_ROWS


def payload_bits(instance: int, image_id: int) -> np.ndarray:
    """The 80 bits that encode (instance, image id), with their CRC, whitened."""
    if not 0 <= instance <= MAX_INSTANCE:
        raise ValueError(f"instance {instance} is outside 0..{MAX_INSTANCE}")
    if not 0 <= image_id <= MAX_IMAGE_ID:
        raise ValueError(f"image id {image_id} is outside 0..{MAX_IMAGE_ID}")
    data = instance.to_bytes(2, "big") + image_id.to_bytes(4, "big")
    raw = data + zlib.crc32(_CRC_PREFIX + data).to_bytes(4, "big")
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8)) ^ _WHITENING


def parse_payload(bits: np.ndarray) -> tuple[int, int] | None:
    """(instance, image id) if ``bits`` carry a valid CRC, else None."""
    raw = np.packbits((np.asarray(bits, dtype=np.uint8) & 1) ^ _WHITENING).tobytes()
    data, crc = raw[:6], raw[6:]
    if zlib.crc32(_CRC_PREFIX + data).to_bytes(4, "big") != crc:
        return None
    return int.from_bytes(data[:2], "big"), int.from_bytes(data[2:], "big")


def _rgb_to_yuv(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's RGB→YUV (BT.601, chroma offset 128) in floating point."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return np.stack([y, (b - y) * 0.492 + 128.0, (r - y) * 0.877 + 128.0], axis=-1)


def _yuv_to_rgb(yuv: np.ndarray) -> np.ndarray:
    y, u, v = yuv[..., 0], yuv[..., 1] - 128.0, yuv[..., 2] - 128.0
    return np.stack([y + 1.14 * v, y - 0.395 * u - 0.581 * v, y + 2.032 * u], axis=-1)


def _blocks(band: np.ndarray) -> np.ndarray:
    """The whole 4×4 blocks of a band as a (rows, cols, 4, 4) view-copy."""
    rows, cols = band.shape[0] // BLOCK, band.shape[1] // BLOCK
    cut = band[: rows * BLOCK, : cols * BLOCK]
    return cut.reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3)


def _largest_singular_values(blocks: np.ndarray) -> np.ndarray:
    """Each block's largest singular value, as the package computes it (of the block's DCT), through the
    largest eigenvalue of DᵀD: the same number, twice as fast as an SVD."""
    coefficients = _DCT @ blocks @ _DCT.T
    gram = np.swapaxes(coefficients, -1, -2) @ coefficients
    return np.sqrt(np.maximum(np.linalg.eigvalsh(gram)[..., -1], 0.0))


def _bit_index(rows: int, cols: int, shift_r: int = 0, shift_c: int = 0) -> np.ndarray:
    r = (np.arange(rows)[:, None] + shift_r) % TILE_ROWS
    c = (np.arange(cols)[None, :] + shift_c) % TILE_COLS
    return r * TILE_COLS + c


def code_band(approx: np.ndarray, block_bits: np.ndarray, scale: float = SCALE) -> np.ndarray:
    """A DWT approximation band with bit ``block_bits[i, j]`` coded into its block (i, j): the largest singular
    value of the block's DCT set to ``(s // scale + 0.25 + 0.5 * bit) * scale`` (the package's
    ``EmbedDwtDctSvd.diffuse_dct_svd``), for all blocks at once."""
    band = np.array(approx, dtype=np.float64)
    blocks = _blocks(band)
    rows, cols = blocks.shape[:2]
    u, s, vh = np.linalg.svd(_DCT @ blocks @ _DCT.T)
    s[..., 0] = (s[..., 0] // scale + 0.25 + 0.5 * np.asarray(block_bits)[:rows, :cols]) * scale
    coded = _DCT.T @ (u @ (s[..., :, None] * vh)) @ _DCT
    band[: rows * BLOCK, : cols * BLOCK] = coded.transpose(0, 2, 1, 3).reshape(rows * BLOCK, cols * BLOCK)
    return band


def band_votes(approx: np.ndarray, scale: float = SCALE) -> np.ndarray:
    """Each whole block's bit as the package reads it (``infer_dct_svd``: the remainder of the largest
    singular value above half the scale), as a (rows, cols) array of 0.0/1.0."""
    s0 = _largest_singular_values(_blocks(np.asarray(approx, dtype=np.float64)))
    return ((s0 % scale) > 0.5 * scale).astype(np.float64)


def embed(image: Image.Image, bits: np.ndarray, scale: float = SCALE) -> Image.Image:
    """``image`` (RGB) with ``bits`` coded into the blocks of its chroma channels' DWT approximation band."""
    if not can_mark(*image.size):
        raise ValueError(f"a {image.width}×{image.height} image is too small to mark (needs 256×256 pixels)")
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    yuv = _rgb_to_yuv(rgb)
    height, width = (rgb.shape[0] // 4) * 4, (rgb.shape[1] // 4) * 4
    for channel in CHANNELS:
        approx, details = pywt.dwt2(yuv[:height, :width, channel], "haar")
        block_bits = np.asarray(bits)[_bit_index(approx.shape[0] // BLOCK, approx.shape[1] // BLOCK)]
        yuv[:height, :width, channel] = pywt.idwt2((code_band(approx, block_bits, scale), details), "haar")
    return Image.fromarray(np.clip(np.rint(_yuv_to_rgb(yuv)), 0, 255).astype(np.uint8), "RGB")


def block_scores(rgb: np.ndarray, scale: float = SCALE) -> list[np.ndarray]:
    """Per chroma channel, each whole block's vote (1.0 or 0.0) as a (rows, cols) array."""
    yuv = _rgb_to_yuv(rgb)
    height, width = (rgb.shape[0] // 4) * 4, (rgb.shape[1] // 4) * 4
    return [band_votes(pywt.dwt2(yuv[:height, :width, channel], "haar")[0], scale) for channel in CHANNELS]


def _bit_shares(votes: list[np.ndarray], shift_r: int = 0, shift_c: int = 0) -> np.ndarray:
    totals = np.zeros(PAYLOAD_BITS)
    counts = np.zeros(PAYLOAD_BITS)
    for grid in votes:
        index = _bit_index(*grid.shape, shift_r, shift_c).ravel()
        totals += np.bincount(index, weights=grid.ravel(), minlength=PAYLOAD_BITS)
        counts += np.bincount(index, minlength=PAYLOAD_BITS)
    return totals / np.maximum(counts, 1)


def read_bits(image: Image.Image) -> np.ndarray:
    """The 80 bits as coded at the image's own origin (no search)."""
    return (_bit_shares(block_scores(np.asarray(image.convert("RGB"), dtype=np.float64))) > 0.5).astype(np.uint8)


def _found(shares: np.ndarray, how: str) -> Mark | None:
    parsed = parse_payload((shares > 0.5).astype(np.uint8))
    if parsed is None:
        return None
    return Mark(instance=parsed[0], image_id=parsed[1], how=how, margin=float(np.mean(np.abs(shares - 0.5))))


def _tile_shares(votes: list[np.ndarray]) -> np.ndarray:
    """The vote share of each tile cell (row mod 8, column mod 10) as an 8×10 array."""
    return _bit_shares(votes).reshape(TILE_ROWS, TILE_COLS)


def _search_shifts(cells: np.ndarray, label: str) -> Mark | None:
    """Every tile position of one block grid at once: bit k sits in cell ``divmod(k, 10)`` shifted."""
    for shift_r in range(TILE_ROWS):
        for shift_c in range(TILE_COLS):
            shares = np.roll(cells, (shift_r, shift_c), axis=(0, 1)).ravel()
            if parse_payload((shares > 0.5).astype(np.uint8)) is not None:
                return _found(shares, f"{label}, tile shift ({shift_r}, {shift_c})")
    return None


def _search(rgb: np.ndarray, label: str) -> Mark | None:
    """Every pixel offset (0..7 each way) and tile position of the image's central window (a crop)."""
    height, width = rgb.shape[:2]
    size = min(_SEARCH_WINDOW, (height - 8) // 8 * 8, (width - 8) // 8 * 8)
    top, left = max(0, (height - size) // 2 - 4), max(0, (width - size) // 2 - 4)
    for dy in _OFFSETS:
        for dx in _OFFSETS:
            window = rgb[top + dy : top + dy + size, left + dx : left + dx + size]
            mark = _search_shifts(
                _tile_shares(block_scores(window)), f"{label} at pixel offset ({top + dy}, {left + dx})"
            )
            if mark is not None:
                return mark
    return None


def detect(image: Image.Image, *, search: bool = True) -> Mark | None:
    """The watermark of ``image``, or None. Reads the image as it is, then (``search``) a copy upscaled ×2 (a
    downscaled image), then every block offset and tile position of its central window (a crop). Images with
    a side under 128 pixels are not read: too few blocks vote."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    if min(image.size) >= MIN_DETECT_SIDE:
        mark = _found(_bit_shares(block_scores(rgb)), "as is")
        if mark is not None or not search:
            return mark
    if not search:
        return None
    if min(image.size) * 2 >= MIN_DETECT_SIDE and max(image.size) * 2 <= MAX_UPSCALED_SIDE:
        doubled = image.convert("RGB").resize((image.width * 2, image.height * 2), Image.Resampling.BICUBIC)
        mark = _found(_bit_shares(block_scores(np.asarray(doubled, dtype=np.float64))), "rescaled ×2")
        if mark is not None:
            return mark
    if min(image.size) >= MIN_DETECT_SIDE:
        return _search(rgb, "searched for a crop")
    return None
