"""Frozen CLIP backbone features, computed once per image (and per prompt) and cached: what the quick heads read.

No Django imports. For an image: the pooled projected embedding (unit length, what a PickScore-style score reads)
and the patch tokens: the vision tower's last hidden state through its final layer norm and the visual
projection (so they live in the same space as the text embedding; token 0 is the class token, whose
normalisation is the pooled embedding). For a prompt: the pooled projected text embedding (unit length) and the
projected text tokens with their attention mask.

Images are keyed by a caller key (an image id, a file name) or, without one, by a hash of their pixels; features
are computed in batches, in eval mode, without gradients, and kept on the CPU.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import CLIPModel, CLIPProcessor

from .data import load_image
from .model import _load_clip, to_pil

__all__ = [
    "FeatureCache",
    "ImageFeatures",
    "TextFeatures",
    "encode_image_features",
    "encode_text_features",
    "pixel_key",
]


@dataclass
class ImageFeatures:
    """Per-image features, stacked: ``pooled`` (N, P) unit length, ``patches`` (N, T, P) with T = 1 + patches."""

    pooled: torch.Tensor
    patches: torch.Tensor

    def __len__(self) -> int:
        return int(self.pooled.shape[0])

    def index(self, rows: torch.Tensor | Sequence[int]) -> ImageFeatures:
        rows = torch.as_tensor(rows, dtype=torch.long)
        return ImageFeatures(self.pooled[rows], self.patches[rows])


@dataclass
class TextFeatures:
    """Per-prompt features: ``pooled`` (N, P) unit length, ``tokens`` (N, L, P), ``mask`` (N, L) (1 = token)."""

    pooled: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.pooled.shape[0])

    def index(self, rows: torch.Tensor | Sequence[int]) -> TextFeatures:
        rows = torch.as_tensor(rows, dtype=torch.long)
        return TextFeatures(self.pooled[rows], self.tokens[rows], self.mask[rows])


def encode_image_features(clip: CLIPModel, pixel_values: torch.Tensor) -> ImageFeatures:
    """Features of a batch of CLIP pixel values (no grad is the caller's business)."""
    vision = clip.vision_model
    hidden = vision(pixel_values=pixel_values).last_hidden_state
    patches = clip.visual_projection(vision.post_layernorm(hidden))
    pooled = nn.functional.normalize(patches[:, 0], dim=-1)
    return ImageFeatures(pooled.float(), patches.float())


def encode_text_features(clip: CLIPModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextFeatures:
    """Features of a batch of tokenized prompts (the text tower's last state is already layer-normed)."""
    out = clip.text_model(input_ids=input_ids, attention_mask=attention_mask)
    pooled = nn.functional.normalize(clip.text_projection(out.pooler_output), dim=-1)
    tokens = clip.text_projection(out.last_hidden_state)
    return TextFeatures(pooled.float(), tokens.float(), attention_mask.float())


def pixel_key(image: Image.Image) -> str:
    """A content key for an image: SHA-1 of its RGB pixels and size."""
    rgb = image.convert("RGB")
    digest = hashlib.sha1(f"{rgb.size}".encode())  # noqa: S324 - a cache key, not security
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def _as_pil(source: Any) -> Image.Image:
    if isinstance(source, str | os.PathLike | bytes | bytearray | memoryview):
        return load_image(source)
    return to_pil(source)


class FeatureCache:
    """A frozen CLIP and the features of every image and prompt it has seen (CPU tensors, keyed).

    ``image_features(images, keys)`` computes what is missing and returns the stacked features in the order
    asked; ``keys`` (any hashables: image ids, paths) skip decoding images already cached, without them the key
    is :func:`pixel_key`. ``text_features(prompts)`` likewise by prompt text.
    """

    def __init__(
        self,
        backbone: str | os.PathLike[str] | None = None,
        *,
        processor: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 128,
        clip: CLIPModel | None = None,
        clip_processor: CLIPProcessor | None = None,
    ) -> None:
        if clip is None or clip_processor is None:
            if backbone is None:
                raise ValueError("FeatureCache needs a backbone (a CLIP folder or hub id) or a loaded clip + processor")
            clip, clip_processor = _load_clip(os.fspath(backbone), os.fspath(processor) if processor else None)
        self.backbone = os.fspath(backbone) if backbone is not None else ""
        self.clip = clip.to(device).eval().requires_grad_(False)
        self.processor = clip_processor
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._images: dict[Hashable, tuple[torch.Tensor, torch.Tensor]] = {}
        self._texts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    # -- sizes ---------------------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """P: the projection width (pooled embeddings and tokens)."""
        return int(self.clip.config.projection_dim)

    @property
    def image_tokens(self) -> int:
        """T: the class token plus one per patch."""
        vision = self.clip.config.vision_config
        return 1 + (vision.image_size // vision.patch_size) ** 2

    @property
    def logit_scale(self) -> float:
        """exp(τ): the zero-shot score is this times cos(text, image)."""
        return float(self.clip.logit_scale.detach().exp())

    def __len__(self) -> int:
        return len(self._images)

    # -- images ----------------------------------------------------------------------------------------------------
    def keys_for(self, images: Sequence[Any], keys: Sequence[Hashable] | None = None) -> list[Hashable]:
        """The cache key of each image (its caller key, or its pixel hash); computes and caches missing ones."""
        if keys is not None and len(keys) != len(images):
            raise ValueError(f"{len(keys)} keys for {len(images)} images")
        resolved: list[Hashable] = []
        todo: dict[Hashable, Image.Image] = {}
        for i, image in enumerate(images):
            if keys is not None and keys[i] in self._images:
                resolved.append(keys[i])
                continue
            pil = _as_pil(image)
            key = keys[i] if keys is not None else ("pixels", pixel_key(pil))
            resolved.append(key)
            if key not in self._images and key not in todo:
                todo[key] = pil
        self._compute_images(todo)
        return resolved

    def image_features(self, images: Sequence[Any], keys: Sequence[Hashable] | None = None) -> ImageFeatures:
        """Stacked features of ``images`` in order (computed once per key)."""
        return self.features_of_keys(self.keys_for(images, keys))

    def features_of_keys(self, keys: Sequence[Hashable]) -> ImageFeatures:
        """Stacked features of images already cached under ``keys`` (KeyError for one that is not)."""
        if not keys:
            return ImageFeatures(torch.empty(0, self.dim), torch.empty(0, self.image_tokens, self.dim))
        rows = [self._images[k] for k in keys]
        return ImageFeatures(torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]))

    @torch.no_grad()
    def _compute_images(self, todo: dict[Hashable, Image.Image]) -> None:
        items = list(todo.items())
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            pixels = self.processor.image_processor(images=[p for _, p in chunk], return_tensors="pt")["pixel_values"]
            features = encode_image_features(self.clip, pixels.to(self.device, self.clip.dtype))
            for (key, _), pooled, patches in zip(chunk, features.pooled.cpu(), features.patches.cpu(), strict=True):
                self._images[key] = (pooled.clone(), patches.clone())

    # -- prompts ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def text_features(self, prompts: Sequence[str]) -> TextFeatures:
        """Stacked features of ``prompts`` in order (computed once per distinct prompt)."""
        missing = sorted({p for p in prompts if p not in self._texts})
        length = int(self.clip.config.text_config.max_position_embeddings)
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            tokens = self.processor.tokenizer(
                chunk, padding="max_length", truncation=True, max_length=length, return_tensors="pt"
            )
            features = encode_text_features(
                self.clip, tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
            )
            for i, prompt in enumerate(chunk):
                self._texts[prompt] = (
                    features.pooled[i].cpu().clone(),
                    features.tokens[i].cpu().clone(),
                    features.mask[i].cpu().clone(),
                )
        if not prompts:
            return TextFeatures(torch.empty(0, self.dim), torch.empty(0, length, self.dim), torch.empty(0, length))
        rows = [self._texts[p] for p in prompts]
        return TextFeatures(*(torch.stack([r[i] for r in rows]) for i in range(3)))

    # -- persistence (scripts: skip recomputing features across processes) ----------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the cached features (not the backbone) to one file."""
        torch.save({"backbone": self.backbone, "images": self._images, "texts": self._texts}, Path(path))

    def load(self, path: str | os.PathLike[str]) -> int:
        """Add features saved by :meth:`save` for the same backbone; returns how many images were added."""
        saved = torch.load(Path(path), map_location="cpu", weights_only=False)
        if saved.get("backbone") != self.backbone:
            raise ValueError(f"features of {saved.get('backbone')!r}, not of this cache's {self.backbone!r}")
        before = len(self._images)
        self._images.update(saved["images"])
        self._texts.update(saved["texts"])
        return len(self._images) - before


def as_numpy_images(images: Sequence[Any]) -> list[np.ndarray]:
    """HxWx3 uint8 arrays of any image inputs (for callers that keep pixels)."""
    return [np.asarray(_as_pil(i)) for i in images]
