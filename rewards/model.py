"""A CLIP reward model (PickScore recipe): score = exp(τ) · cos(text, image), τ = CLIP's learned logit scale.

Or, with a head (``rewards.heads.HeadEnsemble``), the frozen CLIP's features read by that head: the score is the
head ensemble's (see ``rewards.quick``).

No Django imports: loaded from a hub id or a local folder with transformers' ``from_pretrained``; saved with
``save_pretrained`` plus ``reward_config.json`` (our own settings) and, with a head, ``head.safetensors``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import CLIPModel, CLIPProcessor

__all__ = [
    "REWARD_CONFIG_NAME",
    "RewardModel",
    "RewardModelConfig",
    "RewardModelError",
    "is_reward_model_dir",
    "to_pil",
]

REWARD_CONFIG_NAME = "reward_config.json"
HEAD_WEIGHTS_NAME = "head.safetensors"
FORMAT_VERSION = 2  # 2: an optional head (a folder without one is still written as 1, readable by older code)

ImageInput = Image.Image | np.ndarray | torch.Tensor


class RewardModelError(Exception):
    """The reward model cannot be built, loaded or used as asked (message meant for the user)."""


@dataclass
class RewardModelConfig:
    """Our settings, stored beside the CLIP weights as ``reward_config.json``."""

    backbone: str = ""  # the CLIP hub id or folder it started from
    trainable_layers: int | None = None
    format_version: int = FORMAT_VERSION
    head: dict[str, Any] | None = None  # HeadEnsemble.describe() of a frozen-backbone head; None: the CLIP score


def is_reward_model_dir(path: str | os.PathLike[str]) -> bool:
    """True for a folder written by :meth:`RewardModel.save`."""
    return (Path(path) / REWARD_CONFIG_NAME).is_file()


def to_pil(image: ImageInput) -> Image.Image:
    """A PIL RGB image from PIL, an HxWx3 uint8/float array or a 3xHxW / HxWx3 tensor (floats in [0, 1])."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[2] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.ndim != 3:
        raise RewardModelError(f"expected one image (HxWx3 or 3xHxW), got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return Image.fromarray(array)


def _load_clip(name_or_path: str, processor_path: str | None) -> tuple[CLIPModel, CLIPProcessor]:
    looks_like_path = os.path.isabs(name_or_path) or name_or_path.startswith((".", "~"))
    if looks_like_path and not Path(name_or_path).expanduser().is_dir():
        raise RewardModelError(f"cannot load a CLIP backbone from {name_or_path!r}: no such folder")
    try:
        clip = CLIPModel.from_pretrained(name_or_path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RewardModelError(
            f"cannot load a CLIP backbone from {name_or_path!r}: not a local CLIP folder or a hub id available "
            f"offline ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    try:
        processor = CLIPProcessor.from_pretrained(processor_path or name_or_path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RewardModelError(
            f"cannot load the CLIP processor (tokenizer + image processor) from {processor_path or name_or_path!r}; "
            "PickScore-style checkpoints keep it in their base CLIP: pass processor=<that id or folder>"
        ) from exc
    return clip, processor


class RewardModel(nn.Module):
    """CLIP both towers; :meth:`forward` scores text/image pairs, :meth:`score` is the batched inference API.

    With ``head`` (a ``rewards.heads.HeadEnsemble``) the CLIP is frozen and the head scores its features.
    """

    def __init__(
        self,
        clip: CLIPModel,
        processor: CLIPProcessor,
        config: RewardModelConfig | None = None,
        head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.clip = clip
        self.processor = processor
        self.config = config or RewardModelConfig()
        self.head = head
        if head is None:
            self.set_trainable_layers(self.config.trainable_layers)
        else:
            self.clip.requires_grad_(False)

    # -- construction ------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        trainable_layers: int | None = None,
        processor: str | os.PathLike[str] | None = None,
    ) -> RewardModel:
        """A reward model from a CLIP hub id or folder (or a folder saved by :meth:`save`, see :meth:`load`)."""
        name = os.fspath(name_or_path)
        if not name:
            raise RewardModelError("no backbone given: pass a CLIP hub id or a local folder")
        if is_reward_model_dir(name):
            model = cls.load(name)
            if trainable_layers is not None:
                model.set_trainable_layers(trainable_layers)
            return model
        clip, proc = _load_clip(name, os.fspath(processor) if processor else None)
        return cls(clip, proc, RewardModelConfig(backbone=name, trainable_layers=trainable_layers))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RewardModel:
        """Load a folder written by :meth:`save`."""
        path = Path(path)
        if not is_reward_model_dir(path):
            raise RewardModelError(f"{path} is not a saved reward model (no {REWARD_CONFIG_NAME})")
        try:
            raw = json.loads((path / REWARD_CONFIG_NAME).read_text())
            config = RewardModelConfig(**{k: raw[k] for k in asdict(RewardModelConfig()) if k in raw})
        except (ValueError, TypeError) as exc:
            raise RewardModelError(f"{path / REWARD_CONFIG_NAME} is not a valid reward config: {exc}") from exc
        if config.format_version > FORMAT_VERSION:
            raise RewardModelError(f"{path} has format version {config.format_version} (newer than this code)")
        clip, processor = _load_clip(str(path), None)
        return cls(clip, processor, config, head=_load_head(path, config.head) if config.head else None)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """``save_pretrained`` of CLIP and processor (safetensors) plus ``reward_config.json``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.clip.save_pretrained(path)
        self.processor.save_pretrained(path)
        config = asdict(self.config)
        if self.head is not None:
            from safetensors.torch import save_file

            config.update(head=self.head.describe(), format_version=FORMAT_VERSION)
            state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
            save_file(state, str(path / HEAD_WEIGHTS_NAME))
        else:
            config.update(head=None, format_version=1)
        (path / REWARD_CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        return path

    # -- which parameters train --------------------------------------------------------------------------------

    def _towers(self) -> Iterator[tuple[nn.ModuleList, list[nn.Module]]]:
        clip = self.clip
        yield clip.text_model.encoder.layers, [clip.text_model.final_layer_norm, clip.text_projection]
        yield clip.vision_model.encoder.layers, [clip.vision_model.post_layernorm, clip.visual_projection]

    def set_trainable_layers(self, trainable_layers: int | None) -> None:
        """None: everything trains. N ≥ 0: only the last N layers of each tower, final norms, projections and τ."""
        if trainable_layers is not None and (isinstance(trainable_layers, bool) or trainable_layers < 0):
            raise RewardModelError(f"trainable_layers must be None or an integer ≥ 0, got {trainable_layers!r}")
        self.config.trainable_layers = trainable_layers
        if trainable_layers is None:
            self.clip.requires_grad_(True)
            return
        self.clip.requires_grad_(False)
        self.clip.logit_scale.requires_grad_(True)
        for layers, heads in self._towers():
            for module in [*list(layers)[len(layers) - min(trainable_layers, len(layers)) :], *heads]:
                module.requires_grad_(True)

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Copies (on CPU) of the trainable parameters: what a checkpoint has to keep."""
        return {n: p.detach().cpu().clone() for n, p in self.trainable_named_parameters()}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.named_parameters())
        missing = [n for n in state if n not in params]
        if missing:
            raise RewardModelError(f"checkpoint does not match the model: unknown parameters {missing[:3]}")
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value.to(params[name].device))

    # -- preprocessing -----------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    @property
    def max_text_length(self) -> int:
        return int(self.clip.config.text_config.max_position_embeddings)

    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention masks, padded to the text tower's length (as PickScore does)."""
        out = self.processor.tokenizer(
            list(prompts), padding="max_length", truncation=True, max_length=self.max_text_length, return_tensors="pt"
        )
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    def preprocess_images(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """CLIP pixel values (N, 3, H, W) float32, on CPU."""
        if not len(images):
            size = self.clip.config.vision_config.image_size
            return torch.empty(0, 3, size, size)
        pil = [to_pil(image) for image in images]
        return self.processor.image_processor(images=pil, return_tensors="pt")["pixel_values"].float()

    # -- scoring -----------------------------------------------------------------------------------------------

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return nn.functional.normalize(self.clip.text_projection(out.pooler_output), dim=-1)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.clip.vision_model(pixel_values=pixel_values)
        return nn.functional.normalize(self.clip.visual_projection(out.pooler_output), dim=-1)

    def scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, *pixel_values: torch.Tensor
    ) -> torch.Tensor:
        """Scores (B, K) of each prompt against its K images (K pixel tensors of shape (B, 3, H, W))."""
        if self.head is not None:
            return self._head_scores(input_ids, attention_mask, pixel_values)
        text = self.encode_text(input_ids, attention_mask)
        batch = text.shape[0]
        images = self.encode_images(torch.cat(pixel_values, dim=0)).view(len(pixel_values), batch, -1)
        return self.scale() * torch.einsum("bd,kbd->bk", text, images.to(text.dtype))

    def _head_scores(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pixel_values: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        from .features import encode_image_features, encode_text_features

        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        text = encode_text_features(self.clip, input_ids, attention_mask).pooled
        batch = text.shape[0]
        images = encode_image_features(self.clip, torch.cat(list(pixel_values), dim=0))
        scores = self.head(images.pooled, images.patches, text.repeat(len(pixel_values), 1))
        return scores.view(len(pixel_values), batch).T

    @torch.no_grad()
    def score(
        self,
        prompts: Sequence[str],
        images: Sequence[ImageInput],
        *,
        batch_size: int = 64,
        device: str | torch.device | None = None,
    ) -> torch.Tensor:
        """exp(τ)·cos(prompt_i, image_i) for each i, as a float32 CPU tensor (eval mode, no grad, batched)."""
        if len(prompts) != len(images):
            raise RewardModelError(f"{len(prompts)} prompts for {len(images)} images: need one prompt per image")
        if batch_size < 1:
            raise RewardModelError(f"batch_size must be ≥ 1, got {batch_size}")
        if device is not None:
            self.to(device)
        was_training = self.training
        self.eval()
        try:
            out = []
            for start in range(0, len(prompts), batch_size):
                tokens = self.tokenize(prompts[start : start + batch_size])
                pixels = self.preprocess_images(images[start : start + batch_size])
                scores = self(
                    tokens["input_ids"].to(self.device),
                    tokens["attention_mask"].to(self.device),
                    pixels.to(self.device, self.clip.dtype),
                )
                out.append(scores[:, 0].float().cpu())
            return torch.cat(out) if out else torch.empty(0)
        finally:
            self.train(was_training)

    def describe(self) -> dict[str, Any]:
        """Sizes for logs and the run summary."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for _, p in self.trainable_named_parameters())
        described = {**asdict(self.config), "parameters": total, "trainable_parameters": trainable}
        if self.head is not None:
            described["head"] = self.head.describe()
            described["head_parameters"] = sum(p.numel() for p in self.head.parameters())
        return described


def _load_head(path: Path, described: dict[str, Any]) -> nn.Module:
    """The head ensemble saved beside the CLIP weights (``head.safetensors``)."""
    from safetensors.torch import load_file

    from .heads import HeadEnsemble

    try:
        head = HeadEnsemble.from_description(described)
        head.load_state_dict(load_file(str(path / HEAD_WEIGHTS_NAME)))
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise RewardModelError(f"{path}: cannot load the reward head: {exc}") from exc
    return head.eval()
