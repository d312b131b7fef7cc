"""Storing test images under the settings generation would record for them (so selectors find them)."""

from __future__ import annotations

import io
from collections.abc import Iterable

from generators import selectors, services
from generators.models import ModelVersion, Prompt
from generators.sampler_settings import SettingsRequest

TEST_NATIVE_SIZE = 8


def store_images(
    version: ModelVersion,
    images: Iterable[tuple[Prompt, int, bytes]],
    *,
    settings: SettingsRequest | None = None,
    dtype: str = "fp32",
    native_size: int = TEST_NATIVE_SIZE,
) -> int:
    """Store (prompt, seed, png) images of ``version`` as a ``generate`` run would under ``settings`` (default:
    the version's defaults) in ``dtype``; the base model's native size is recorded first, as generation does."""
    services.base_model_record_native_size(base_model=version.base_model, size=native_size)
    resolved = selectors.resolved_settings(version, settings or SettingsRequest(), dtype)
    assert resolved is not None
    return services.generated_images_store_batch(
        model_version=version,
        settings=resolved.as_dict(),
        settings_hash=resolved.digest(),
        images=[(prompt, seed, png, resolved.width, resolved.height) for prompt, seed, png in images],
    )


def tiny_png(shade: int, green: int = 7, blue: int = 7) -> bytes:
    """An 8×8 PNG of one colour (red channel ``shade`` mod 256): distinct bytes per shade, for image fixtures."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade % 256, green, blue)).save(buffer, format="PNG")
    return buffer.getvalue()
