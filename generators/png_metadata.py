"""Provenance as PNG text chunks: written into every generated image, read back from any uploaded PNG.

No Django here. Each field is one chunk keyed ``imagerlhf:<field>``: tEXt when the value is Latin-1, iTXt
(UTF-8) otherwise (a prompt in another script). Encoding stays deterministic: the same pixels and fields give
the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from PIL import Image, PngImagePlugin

PREFIX = "imagerlhf:"
SOFTWARE = "imagerlhf"

# The fields a generated image carries, in the order they are written.
FIELDS = (
    "image_id",
    "version_id",
    "version",
    "base_checkpoint",
    "base_revision",
    "adapter_sha256",
    "prompt",
    "seed",
    "sampler_settings",
    "run_id",
    "platform_instance",
    "watermark",
)


def png_with_metadata(image: Image.Image, fields: Mapping[str, str]) -> bytes:
    """``image`` as PNG bytes (the encoding of ``pipeline.png_bytes``) with ``fields`` as text chunks."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown provenance fields: {sorted(unknown)}")
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", SOFTWARE)
    for name in FIELDS:
        if name in fields:
            info.add_text(PREFIX + name, str(fields[name]))  # falls back to iTXt for non-Latin-1 text
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6, pnginfo=info)
    return buffer.getvalue()


def read_metadata(image: Image.Image) -> dict[str, str]:
    """The ``imagerlhf:`` text fields of an opened image (empty for other formats or a PNG without them)."""
    text = getattr(image, "text", None) or {}
    return {key[len(PREFIX) :]: str(value) for key, value in text.items() if key.startswith(PREFIX)}
