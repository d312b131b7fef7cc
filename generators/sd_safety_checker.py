"""The Stable Diffusion safety checker as a safety screen (``sd_safety_checker``). No Django or torch at import.

diffusers' ``StableDiffusionSafetyChecker`` (a CLIP vision tower and the cosine thresholds of its concept
embeddings) with its ``CLIPImageProcessor``, both loaded with ``from_pretrained`` from :func:`checker_source`:
the ``SAFETY_CHECKER_PATH`` Django setting when there is one, else the ``SAFETY_CHECKER_PATH`` environment
variable, else the hub id :data:`DEFAULT_SOURCE` (a local folder or a hub id). Loaded once per process and
source, on CUDA when the worker has it, in fp32. Registered as a built-in by ``generators/registration.py``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from generators.safety_screens import ScreenError

DEFAULT_SOURCE = "CompVis/stable-diffusion-safety-checker"
REASON = "NSFW concept (safety checker)"
SETTING = "SAFETY_CHECKER_PATH"

_loaded: dict[tuple[str, str], tuple[Any, Any]] = {}  # (source, device) -> (checker, processor)
_lock = threading.Lock()


def checker_source() -> str:
    """Where the checker is loaded from: the setting, else the environment variable, else the hub id."""
    configured = None
    try:
        from django.conf import settings

        if settings.configured:
            configured = getattr(settings, SETTING, None)
    except ImportError:  # plain Python, without Django
        pass
    return str(configured or os.environ.get(SETTING) or DEFAULT_SOURCE)


def load_checker(source: str | None = None, device: str = "auto") -> tuple[Any, Any]:
    """(checker in eval mode on its device, image processor) from ``source`` (default :func:`checker_source`),
    loaded once per process; a :class:`ScreenError` saying why when it cannot be loaded."""
    from core.devices import resolve_device

    source = source or checker_source()
    device = resolve_device(device)
    with _lock:
        if (source, device) not in _loaded:
            from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
            from transformers import CLIPImageProcessor

            try:
                checker = StableDiffusionSafetyChecker.from_pretrained(source)
                processor = CLIPImageProcessor.from_pretrained(source)
            except (OSError, ValueError) as exc:
                raise ScreenError(f"The safety checker at {source!r} cannot be loaded: {exc}") from exc
            _loaded[(source, device)] = (checker.to(device).eval(), processor)
        return _loaded[(source, device)]


def forget_loaded() -> None:
    """Drop the loaded checkers (tests; a worker that must free the memory)."""
    with _lock:
        _loaded.clear()


def nsfw_flags(images: list[Any], source: str | None = None) -> list[bool]:
    """Whether the checker finds an NSFW concept in each HxWx3 uint8 image (one forward pass for all)."""
    import numpy as np

    checker, processor = load_checker(source)
    inputs = processor(images=[np.asarray(image) for image in images], return_tensors="pt")
    clip_input = inputs.pixel_values.to(device=checker.device, dtype=checker.dtype)
    # The checker blacks out flagged images in the list it is given: give it placeholders, not the images.
    _, flags = checker(clip_input=clip_input, images=[np.zeros(1) for _ in images])
    return [bool(flag) for flag in flags]


def sd_safety_checker(prompt: str, image: Any) -> str | None:
    """:data:`REASON` when the checker finds an NSFW concept in the image, else None (the prompt is not read)."""
    return REASON if nsfw_flags([image])[0] else None
