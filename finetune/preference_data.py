"""Training examples for Diffusion-DPO and Diffusion-KTO from Pick-a-Pic rows, and the VAE latent cache. No Django.

Rows are anything with the attributes of ``feedback.pickapic.PickapicRow`` (``caption``, ``jpg_0``, ``jpg_1``,
``label_0``, ``label_1`` and optionally ``both_bad``). Every vote is its own example, so a pair three annotators
agreed on weighs three times one they split on.

- DPO: a decided vote is a pair (winner, loser, label 1). A tie is dropped (``ties="drop"``, the default) or kept
  with the soft label 0.5 (``ties="soft"``: the loss then pulls the two images' implicit rewards together). A
  ``both_bad`` vote is labelled as a tie and follows the same rule.
- KTO: a decided vote gives a liked image (the winner) and a disliked one (the loser); ``both_bad`` gives two
  disliked images; a plain tie says nothing about either image alone and is dropped.

Images are keyed by the SHA-256 of their bytes, so one stored image is decoded and encoded through the VAE once
(:class:`LatentCache`), however many votes show it.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .preference_config import ALGORITHMS, TIE_POLICIES


class PreferenceDataError(ValueError):
    """The votes cannot train this algorithm (message meant for the user)."""


@dataclass(frozen=True)
class DPOExample:
    prompt: str
    winner: str  # image key
    loser: str
    label: float = 1.0  # probability that ``winner`` is the better image


@dataclass(frozen=True)
class KTOExample:
    prompt: str
    image: str
    desirable: bool


@dataclass
class PreferenceExamples:
    """The examples of one algorithm, the image bytes they name and what was left out, by reason."""

    algorithm: str
    dpo: list[DPOExample] = field(default_factory=list)
    kto: list[KTOExample] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.dpo) if self.algorithm == "diffusion_dpo" else len(self.kto)

    @property
    def prompts(self) -> list[str]:
        """Every distinct prompt, in first-seen order."""
        items = self.dpo if self.algorithm == "diffusion_dpo" else self.kto
        return list(dict.fromkeys(example.prompt for example in items))

    def counts(self) -> dict[str, int]:
        if self.algorithm == "diffusion_dpo":
            soft = sum(1 for e in self.dpo if e.label != 1.0)
            return {"pairs": len(self.dpo), "soft_pairs": soft, "images": len(self.images)}
        liked = sum(1 for e in self.kto if e.desirable)
        return {"liked": liked, "disliked": len(self.kto) - liked, "images": len(self.images)}


def image_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_examples(rows: Iterable[object], algorithm: str, *, ties: str = "drop") -> PreferenceExamples:
    """The examples of ``algorithm`` from Pick-a-Pic rows (see the module docstring for ties and ``both_bad``)."""
    if algorithm not in ALGORITHMS:
        raise PreferenceDataError(f"unknown algorithm {algorithm!r}: expected one of {', '.join(ALGORITHMS)}")
    if ties not in TIE_POLICIES:
        raise PreferenceDataError(f"unknown tie policy {ties!r}: expected one of {', '.join(TIE_POLICIES)}")
    out, dropped = PreferenceExamples(algorithm), Counter()
    for row in rows:
        keys = []
        for data in (bytes(row.jpg_0), bytes(row.jpg_1)):
            key = image_key(data)
            out.images.setdefault(key, data)
            keys.append(key)
        prompt, label_0, label_1 = str(row.caption), float(row.label_0), float(row.label_1)
        both_bad = bool(getattr(row, "both_bad", False))
        decided = label_0 != label_1
        winner, loser = (keys[0], keys[1]) if label_0 > label_1 else (keys[1], keys[0])
        if algorithm == "diffusion_dpo":
            if decided:
                out.dpo.append(DPOExample(prompt, winner, loser))
            elif ties == "soft":
                out.dpo.append(DPOExample(prompt, keys[0], keys[1], 0.5))
            else:
                dropped["both_bad" if both_bad else "tie"] += 1
        elif both_bad:
            out.kto.extend(KTOExample(prompt, key, False) for key in keys)
        elif decided:
            out.kto += [KTOExample(prompt, winner, True), KTOExample(prompt, loser, False)]
        else:
            dropped["tie"] += 1
    used = {e.winner for e in out.dpo} | {e.loser for e in out.dpo} | {e.image for e in out.kto}
    out.images = {key: data for key, data in out.images.items() if key in used}
    out.dropped = dict(dropped)
    if not len(out):
        left = ", ".join(f"{count} {reason}" for reason, count in sorted(dropped.items())) or "no votes"
        raise PreferenceDataError(f"no training examples for {algorithm} in these votes (left out: {left})")
    if algorithm == "diffusion_dpo" and all(e.label == 0.5 for e in out.dpo):
        raise PreferenceDataError("every vote is a tie: Diffusion-DPO needs at least one vote with a winner")
    return out


def image_tensor(data: bytes, size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
    """Pixels in [-1, 1] (3, H, W) at ``size`` (height, width): the shorter side resized, then centre-cropped.

    Also returns the original (height, width) and the crop's (top, left), which SDXL's micro-conditioning uses.
    """
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    original = (image.height, image.width)
    height, width = size
    scale = max(height / image.height, width / image.width)
    if image.size != (width, height):
        resized = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
        image = image.resize(resized, Image.Resampling.BICUBIC)
    top, left = (image.height - height) // 2, (image.width - width) // 2
    image = image.crop((left, top, left + width, top + height))
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
    return pixels, original, (top, left)


class LatentCache:
    """VAE latents (the posterior mean × scaling factor) per image key, computed once.

    With ``folder`` the latents are also kept on disk (one ``.pt`` file per key, under a subfolder named by the
    VAE and the size), so later runs on the same images skip the VAE.
    """

    def __init__(
        self,
        vae: torch.nn.Module,
        size: tuple[int, int],
        device: torch.device,
        folder: str | Path | None = None,
        vae_fingerprint: str = "",
    ) -> None:
        self.vae, self.size, self.device = vae, size, device
        self.latents: dict[str, torch.Tensor] = {}
        self.micro: dict[str, tuple[int, int, int, int]] = {}  # original (h, w) and crop (top, left)
        self.folder = Path(folder) / f"{vae_fingerprint or 'vae'}-{size[0]}x{size[1]}" if folder else None
        self.encoded = 0

    def fill(self, images: Mapping[str, bytes], batch_size: int = 16, on_batch: Callable[[int], None] | None = None):
        """Encode every image not cached yet (reading the disk cache first)."""
        missing = [key for key in images if key not in self.latents and not self._read(key)]
        for start in range(0, len(missing), batch_size):
            keys = missing[start : start + batch_size]
            decoded = [image_tensor(images[key], self.size) for key in keys]
            pixels = torch.stack([d[0] for d in decoded]).to(self.device, self.vae.dtype)
            with torch.no_grad():
                latents = self.vae.encode(pixels).latent_dist.mean * self.vae.config.scaling_factor
            for key, latent, (_, original, crop) in zip(keys, latents.float().cpu(), decoded, strict=True):
                self.latents[key], self.micro[key] = latent.clone(), (*original, *crop)
                self._write(key)
            self.encoded += len(keys)
            if on_batch is not None:
                on_batch(start + len(keys))

    def stack(self, keys: list[str]) -> torch.Tensor:
        return torch.stack([self.latents[key] for key in keys])

    def _read(self, key: str) -> bool:
        if self.folder is None or not (self.folder / f"{key}.pt").is_file():
            return False
        try:
            saved = torch.load(self.folder / f"{key}.pt", map_location="cpu", weights_only=True)
        except Exception:  # a damaged cache file is recomputed
            return False
        self.latents[key], self.micro[key] = saved["latent"], tuple(saved["micro"].tolist())
        return True

    def _write(self, key: str) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{key}.pt"
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"latent": self.latents[key], "micro": torch.tensor(self.micro[key])}, partial)
        partial.replace(path)
