"""The invisible watermark (no Django): round trips, attacks it survives, unmarked images, and that its block
coding is invisible-watermark's dwtDctSvd."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from generators import watermark


def texture(size: int, seed: int) -> Image.Image:
    """A colour texture (bicubic noise at several octaves): a hard case for a block code."""
    rng = np.random.default_rng(seed)
    out = np.zeros((size, size, 3))
    for octave in (4, 8, 16, 32):
        noise = (rng.random((octave, octave, 3)) * 255).astype(np.uint8)
        out += np.asarray(Image.fromarray(noise).resize((size, size), Image.Resampling.BICUBIC), float) / octave**0.7
    out = (out - out.min()) / (out.max() - out.min()) * 255
    return Image.fromarray(out.astype(np.uint8))


def jpeg(image: Image.Image, quality: int = 75) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def test_the_payload_round_trips_and_its_crc_rejects_any_flipped_bit():
    bits = watermark.payload_bits(513, 4_000_000_001)
    assert len(bits) == watermark.PAYLOAD_BITS == 80
    assert watermark.parse_payload(bits) == (513, 4_000_000_001)
    for k in range(80):
        flipped = bits.copy()
        flipped[k] ^= 1
        assert watermark.parse_payload(flipped) is None
    assert watermark.parse_payload(np.zeros(80, np.uint8)) is None  # a flat image's bits
    assert watermark.parse_payload(np.ones(80, np.uint8)) is None
    with pytest.raises(ValueError, match="image id"):
        watermark.payload_bits(1, 2**32)


@pytest.mark.parametrize("size", [256, 512])
def test_a_marked_image_reads_back_its_instance_and_id_and_looks_the_same(size):
    original = texture(size, seed=size)
    marked = watermark.embed(original, watermark.payload_bits(7, 123456))

    mark = watermark.detect(marked)
    assert (mark.instance, mark.image_id, mark.how) == (7, 123456, "as is")
    error = np.asarray(marked, float) - np.asarray(original, float)
    assert 10 * np.log10(255**2 / np.mean(error**2)) > 35  # PSNR in dB: invisible
    assert watermark.detect(original) is None


def test_the_mark_survives_jpeg_a_half_size_copy_and_a_crop():
    marked = watermark.embed(texture(512, seed=3), watermark.payload_bits(1, 42))

    assert watermark.detect(jpeg(marked)).image_id == 42
    half = watermark.detect(marked.resize((256, 256), Image.Resampling.BICUBIC))
    assert half.image_id == 42 and half.how == "rescaled ×2"
    cropped = watermark.detect(marked.crop((51, 51, 461, 461)))
    assert cropped.image_id == 42 and cropped.how.startswith("searched for a crop")


def test_small_or_unmarked_images_carry_no_mark():
    assert not watermark.can_mark(32, 32) and watermark.can_mark(256, 256) and not watermark.can_mark(128, 256)
    with pytest.raises(ValueError, match="too small"):
        watermark.embed(texture(32, seed=1), watermark.payload_bits(1, 1))
    rng = np.random.default_rng(0)
    unmarked = [
        Image.new("RGB", (256, 256), (0, 0, 0)),
        Image.new("RGB", (300, 260), (250, 10, 128)),
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)),
        texture(384, seed=9),
        jpeg(texture(256, seed=10)),
    ]
    assert [watermark.detect(image) for image in unmarked] == [None] * len(unmarked)


def test_the_block_coding_is_the_packages_dwt_dct_svd():
    """``code_band``/``band_votes`` code and read the same blocks to the same values as invisible-watermark's
    own ``EmbedDwtDctSvd`` (its per-block loop), and the colour conversion is OpenCV's."""
    cv2 = pytest.importorskip("cv2")
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd

    rng = np.random.default_rng(0)
    band = rng.random((64, 80)) * 400
    block_bits = rng.integers(0, 2, (16, 20))

    ours = watermark.code_band(band, block_bits)
    theirs = band.copy()  # the package's bit order is a running count: give it one bit per block
    EmbedDwtDctSvd(list(block_bits.ravel()), wmLen=block_bits.size, scales=[0, 36, 0]).encode_frame(theirs, 36)
    assert np.allclose(ours, theirs, atol=1e-6)

    reader = EmbedDwtDctSvd([], wmLen=block_bits.size)
    package_votes = [
        reader.infer_dct_svd(theirs[i : i + 4, j : j + 4], 36) for i in range(0, 64, 4) for j in range(0, 80, 4)
    ]
    assert watermark.band_votes(ours).ravel().tolist() == package_votes == block_bits.ravel().tolist()

    rgb = rng.integers(0, 256, (16, 16, 3)).astype(np.float64)
    opencv = cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2YUV).astype(np.float64)  # rounded, clipped to 0..255
    inside = (opencv > 0) & (opencv < 255)
    assert inside.mean() > 0.9
    assert np.abs(watermark._rgb_to_yuv(rgb) - opencv)[inside].max() <= 1.0  # its fixed-point arithmetic
    assert np.allclose(watermark._yuv_to_rgb(watermark._rgb_to_yuv(rgb)), rgb, atol=0.05)
