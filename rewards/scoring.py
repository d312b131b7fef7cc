"""Reward functions for fine-tuning: ``reward(prompts, images) -> list[float]``, batched.

Every reward source has the same signature (:class:`RewardCallable`): a trained reward model, a zero-shot CLIP
(cold start, no votes yet), a PickScore-format checkpoint, or a pixel oracle (sandbox tests). No Django imports.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from .model import ImageInput, RewardModel, is_reward_model_dir, to_pil

__all__ = ["OracleReward", "RewardCallable", "RewardFunction", "as_image_list", "load_reward_function"]


class RewardCallable(Protocol):
    """What fine-tuning calls: one float per (prompt, image), higher is better."""

    def __call__(self, prompts: Sequence[str], images: Any) -> list[float]: ...


def as_image_list(images: Any) -> list[ImageInput]:
    """Split a batch into single images: a list of PIL/arrays/tensors, an (N, H, W, 3) array or an (N, 3, H, W)
    tensor (floats in [0, 1], as ``StableDiffusionPipeline(output_type="np"/"pt")`` returns)."""
    return list(images)  # iterating an array/tensor splits its first axis


class RewardFunction:
    """A :class:`RewardModel` as a reward callable (eval mode, no grad, batched, on ``device``)."""

    def __init__(self, model: RewardModel, *, batch_size: int = 64, device: str | torch.device | None = None):
        self.model = model
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else model.device
        self.model.to(self.device).eval()
        self.source = model.config.backbone

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str], **kwargs: Any) -> RewardFunction:
        """A trained reward model saved by :meth:`RewardModel.save`."""
        function = cls(RewardModel.load(path), **kwargs)
        function.source = os.fspath(path)
        return function

    @classmethod
    def zero_shot(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        processor: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> RewardFunction:
        """Cold start: CLIP score of an untrained backbone (or any CLIP-format checkpoint such as PickScore)."""
        return cls(RewardModel.from_pretrained(name_or_path, processor=processor), **kwargs)

    def scores(self, prompts: Sequence[str], images: Any) -> torch.Tensor:
        """Scores as a float32 CPU tensor (N,)."""
        images = as_image_list(images)
        return self.model.score(list(prompts), images, batch_size=self.batch_size, device=self.device)

    def __call__(self, prompts: Sequence[str], images: Any) -> list[float]:
        return self.scores(prompts, images).tolist()


class OracleReward:
    """A per-image function ``oracle(prompt, image) -> float`` (e.g. a sandbox pixel oracle) as a reward callable."""

    def __init__(self, oracle: Callable[[str, Any], float]) -> None:
        self.oracle = oracle

    def __call__(self, prompts: Sequence[str], images: Any) -> list[float]:
        images = as_image_list(images)
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images: need one prompt per image")
        return [float(self.oracle(p, np.asarray(to_pil(i)))) for p, i in zip(prompts, images, strict=True)]


def load_reward_function(source: str | os.PathLike[str], **kwargs: Any) -> RewardFunction:
    """A saved reward model folder → trained reward; anything else (CLIP folder, hub id) → zero-shot CLIP score."""
    if is_reward_model_dir(Path(source)):
        return RewardFunction.from_directory(source, **kwargs)
    return RewardFunction.zero_shot(source, **kwargs)
