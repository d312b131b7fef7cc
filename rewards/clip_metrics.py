"""CLIP features and CLIP score of generated images (torch; no Django): what ``rewards.metric_stats`` aggregates.

CLIP score follows torchmetrics' ``CLIPScore``: the processor's pixels and tokens, ``get_image_features`` and
``get_text_features``, each L2-normalised, ``100 · cos`` per image, and the aggregate ``max(mean, 0)``
(``metric_stats.clip_score_estimate``). One difference, for captions longer than the text tower: they are
truncated by the tokenizer, which keeps the end-of-text token CLIP pools at, where torchmetrics cuts the token
ids (and with them that token). Image features for Fréchet distance and diversity are the same normalised
image embeddings.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

__all__ = ["ClipFeatureModel", "clip_scores"]


@dataclass
class ClipFeatureModel:
    """A CLIP (``transformers.CLIPModel``) and its processor, in eval mode on one device."""

    model: torch.nn.Module
    processor: object
    device: torch.device
    batch_size: int = 64

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], *, device: str = "cpu", batch_size: int = 64):
        """A CLIP folder (or hub id available offline) written by ``save_pretrained`` with its processor."""
        from transformers import CLIPModel, CLIPProcessor

        model = CLIPModel.from_pretrained(os.fspath(path)).eval().to(device)
        processor = CLIPProcessor.from_pretrained(os.fspath(path))
        return cls(model=model, processor=processor, device=torch.device(device), batch_size=batch_size)

    @property
    def max_text_length(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)

    @torch.no_grad()
    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised image embeddings (N x D, float64 on CPU)."""
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = [image.convert("RGB") for image in images[start : start + self.batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device)
            features = _as_tensor(self.model.get_image_features(pixel_values=pixels)).float()
            out.append(torch.nn.functional.normalize(features, dim=-1).cpu().double().numpy())
        return np.concatenate(out) if out else np.empty((0, 0))

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings (N x D, float64 on CPU)."""
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.processor(
                text=list(texts[start : start + self.batch_size]),
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_text_length,
            )
            features = _as_tensor(
                self.model.get_text_features(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                )
            ).float()
            out.append(torch.nn.functional.normalize(features, dim=-1).cpu().double().numpy())
        return np.concatenate(out) if out else np.empty((0, 0))


def _as_tensor(output) -> torch.Tensor:
    """``get_*_features`` answer a tensor, or (in some transformers releases) an output holding the pooled one."""
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output


def clip_scores(image_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
    """``100 · cos(image_i, text_i)`` for each row (features normalised already), unclamped: torchmetrics clamps
    the mean, not each image."""
    if image_features.shape != text_features.shape:
        raise ValueError(f"{image_features.shape} image features for {text_features.shape} text features")
    return 100.0 * np.sum(image_features * text_features, axis=-1)
