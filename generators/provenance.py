"""Which version, prompt and seed made an image: from its PNG text chunks, else from its invisible watermark.

A read (no writes): ``identify`` takes an opened image and answers a plain dict, the same for the REST view
(``POST /api/v1/provenance/``) and ``manage.py identify_image``. The metadata is only a claim (anybody can
write text chunks); an id found there is looked up in this platform's database, and the watermark, when it
can be read, confirms or contradicts it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from PIL import Image

from generators import watermark
from generators.models import GeneratedImage
from generators.png_metadata import read_metadata


class UnreadableImage(ValueError):
    """The upload is not an image PIL can read, or too large to read."""


def open_image(source, *, max_pixels: int) -> Image.Image:
    """Open and decode an image file (a path or a binary file object), refusing more than ``max_pixels``."""
    try:
        image = Image.open(source)
    except (Image.UnidentifiedImageError, OSError) as exc:
        raise UnreadableImage("The file is not an image this server can read (PNG, JPEG, WebP...).") from exc
    if image.width * image.height > max_pixels:
        raise UnreadableImage(
            f"The image has {image.width}×{image.height} pixels, more than the limit of {max_pixels:,} "
            "(PROVENANCE_MAX_PIXELS): send a smaller copy."
        )
    try:
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"The image could not be decoded ({exc}).") from exc
    return image


def _image_record(image: GeneratedImage) -> dict[str, Any]:
    version = image.model_version
    return {
        "id": image.pk,
        "model_version": version.pk,
        "version": str(version),
        "base_checkpoint": version.base_model.source,
        "adapter_sha256": version.adapter.sha256 if version.adapter is not None else "",
        "prompt": image.prompt.text,
        "seed": image.seed,
        "settings": image.settings,
        "generation_run": image.generation_run_id,
        "width": image.width,
        "height": image.height,
        "sha256": image.sha256,
        "created_at": image.created_at.isoformat(),
    }


def _lookup(image_id: int) -> GeneratedImage | None:
    return (
        GeneratedImage.objects.select_related("model_version__base_model", "model_version__adapter", "prompt")
        .filter(pk=image_id)
        .first()
    )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def identify(image: Image.Image) -> dict[str, Any]:
    """What this platform knows of ``image``: ``identified``, ``recognised_by`` (``metadata``, ``watermark``),
    the generated image's record, the text fields found, the watermark read, and notes saying why not."""
    instance = settings.PROVENANCE_INSTANCE
    metadata = read_metadata(image)
    notes: list[str] = []
    recognised_by: list[str] = []
    record: GeneratedImage | None = None

    claimed = _int(metadata.get("image_id"))
    claimed_instance = _int(metadata.get("platform_instance"))
    if metadata and claimed is None:
        notes.append("The PNG has this platform's text fields but no image id (an image stored before stamping).")
    elif claimed is not None and claimed_instance not in (None, instance):
        notes.append(f"The metadata names platform instance {claimed_instance}; this one is {instance}.")
    elif claimed is not None:
        record = _lookup(claimed)
        if record is None:
            notes.append(f"The metadata names image {claimed}, which this platform's database does not hold.")
        elif metadata.get("version_id") not in (None, str(record.model_version_id)) or metadata.get("seed") not in (
            None,
            str(record.seed),
        ):
            notes.append(f"The metadata's version or seed disagree with image {claimed} in the database.")
            record = None
        else:
            recognised_by.append("metadata")

    # Without a record from the metadata, search harder (crops, downscaled copies).
    mark = watermark.detect(image, search=record is None)
    if mark is None:
        notes.append(
            "No watermark could be read."
            if min(image.size) >= watermark.MIN_DETECT_SIDE
            else f"No watermark read: a {image.width}×{image.height} image is too small to carry one."
        )
    elif mark.instance != instance:
        notes.append(f"The watermark names platform instance {mark.instance}; this one is {instance}.")
    elif record is not None and mark.image_id != record.pk:
        notes.append(f"The watermark names image {mark.image_id}, the metadata image {record.pk}.")
    elif record is not None:
        recognised_by.append("watermark")
    else:
        record = _lookup(mark.image_id)
        if record is None:
            notes.append(f"The watermark names image {mark.image_id}, which this platform's database does not hold.")
        else:
            recognised_by.append("watermark")

    return {
        "identified": record is not None,
        "recognised_by": recognised_by,
        "image": _image_record(record) if record is not None else None,
        "metadata": metadata,
        "watermark": (
            {"instance": mark.instance, "image_id": mark.image_id, "how": mark.how, "margin": round(mark.margin, 3)}
            if mark is not None
            else None
        ),
        "platform_instance": instance,
        "notes": notes,
    }


def describe(result: dict[str, Any]) -> str:
    """``identify``'s answer as a few lines of text (the management command's output)."""
    lines = []
    record = result["image"]
    if record is not None:
        lines += [
            f"Image {record['id']}: version {record['version']} (id {record['model_version']}), seed {record['seed']}",
            f"Prompt: {record['prompt']}",
            f"Base checkpoint: {record['base_checkpoint']}; adapter sha256: {record['adapter_sha256'] or 'none'}",
            f"Generation run: {record['generation_run']}; settings: {record['settings']}",
            f"Recognised by: {', '.join(result['recognised_by'])}",
        ]
    else:
        lines.append("Not identified as an image of this platform.")
        if result["metadata"]:
            lines.append(f"Metadata found (a claim only): {result['metadata']}")
    if result["watermark"] is not None:
        mark = result["watermark"]
        lines.append(f"Watermark: instance {mark['instance']}, image {mark['image_id']} ({mark['how']})")
    lines += result["notes"]
    return "\n".join(lines)
