"""The standard FID InceptionV3's 2048-d pool features, for the ``fid_inception`` metric. No Django; torch and
torch-fidelity are imported only when a model is loaded.

The network is torch-fidelity's ``FeatureExtractorInceptionV3`` (the one torchmetrics' ``FrechetInceptionDistance``
uses, a port of the TensorFlow FID graph): uint8 RGB images go in at any size and are resized inside it to 299 x 299
by its TensorFlow-1-compatible bilinear interpolation, then scaled to [-1, 1]; the 2048 average-pooled features
come out. The weights come only from a local file (the ``INCEPTION_WEIGHTS_PATH`` setting): torch-fidelity
downloads them when given no path, which this module never lets happen. Loaded once per process, path and device.

``rewards.metric_stats.frechet_distance`` on these features is the FID torchmetrics computes on the same images.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "FEATURE_SIZE",
    "InceptionFeatureModel",
    "InceptionUnavailable",
    "enter_torch_fidelity",
    "extractor_class",
    "forget_loaded",
    "load_inception",
]

FEATURE_SIZE = 2048
SETTING = "INCEPTION_WEIGHTS_PATH"

_loaded: dict[tuple[str, str], InceptionFeatureModel] = {}
_lock = threading.Lock()


class InceptionUnavailable(Exception):
    """The FID InceptionV3 cannot be loaded: no weights file configured, a missing or unreadable one, or no
    torch-fidelity."""


def enter_torch_fidelity() -> None:
    """Make torch-fidelity's modules importable where torchvision is not installed.

    torch-fidelity's package ``__init__`` imports its CLIP, DINOv2 and VGG extractors, which import torchvision
    (and torchmetrics' image metrics import that package); its Inception needs torch alone. Without torchvision the
    package is registered without running its ``__init__``, so that ``torch_fidelity.feature_extractor_inceptionv3``
    imports. Imports no torch; does nothing where torchvision is there, torch-fidelity is not, or it is imported.
    """
    if "torch_fidelity" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return
    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None or not spec.submodule_search_locations:
        return
    package = types.ModuleType("torch_fidelity", "torch-fidelity, registered without its __init__ (no torchvision)")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["torch_fidelity"] = package


def extractor_class() -> type:
    """torch-fidelity's ``FeatureExtractorInceptionV3`` (see :func:`enter_torch_fidelity`)."""
    enter_torch_fidelity()
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except (ImportError, RuntimeError, OSError) as exc:  # not installed, or a torchvision that cannot load
        raise InceptionUnavailable(
            f"torch-fidelity's InceptionV3 cannot be imported ({exc}): install torch-fidelity==0.4.0 "
            "(pyproject.toml's metrics extra)."
        ) from exc
    return FeatureExtractorInceptionV3


def _check_weights(path: str) -> None:
    """Refuse a path that is not a readable file of plain tensors before torch-fidelity unpickles it."""
    import torch

    if not path:
        raise InceptionUnavailable(f"{SETTING} is not set: name the FID InceptionV3 weights file (.pth).")
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise InceptionUnavailable(f"The Inception weights file {path!r} ({SETTING}) does not exist or is unreadable.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several kinds for a file that is not a plain state dict
        raise InceptionUnavailable(f"The Inception weights file {path!r} cannot be read: {exc}") from exc
    if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise InceptionUnavailable(f"{path!r} is not a state dict of the FID InceptionV3 (torch-fidelity's layout).")


@dataclass
class InceptionFeatureModel:
    """The FID InceptionV3 in eval mode on one device."""

    network: Any
    device: str
    batch_size: int = 16

    @classmethod
    def from_weights(cls, path: str | os.PathLike[str], *, device: str = "cpu", batch_size: int = 16):
        """Build torch-fidelity's extractor (2048-d features) with the weights of the local file ``path``."""
        path = os.fspath(path)
        _check_weights(path)
        try:
            network = extractor_class()("inception-v3-compat", ["2048"], feature_extractor_weights_path=path)
        except InceptionUnavailable:
            raise
        except Exception as exc:  # a state dict whose shapes do not match, an unreadable file, ...
            raise InceptionUnavailable(f"The Inception weights at {path!r} cannot be loaded: {exc}") from exc
        return cls(network=network.to(device).eval(), device=device, batch_size=batch_size)

    def image_features(self, images: Sequence[Any]) -> np.ndarray:
        """2048-d pool features (N x 2048, float64 on CPU) of RGB images (PIL images or H x W x 3 uint8 arrays).

        Images are batched by size (the network resizes each batch to 299 x 299 itself); the order is kept.
        """
        import torch

        arrays = [np.asarray(image.convert("RGB") if hasattr(image, "convert") else image) for image in images]
        out = np.empty((len(arrays), FEATURE_SIZE), dtype=np.float64)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for index, array in enumerate(arrays):
            if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
                raise ValueError(f"expected H x W x 3 uint8 images, got {array.dtype} {array.shape}")
            by_size.setdefault(array.shape, []).append(index)
        with torch.no_grad():
            for indices in by_size.values():
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start : start + self.batch_size]
                    batch = torch.from_numpy(np.stack([arrays[i] for i in chunk])).permute(0, 3, 1, 2).contiguous()
                    (features,) = self.network(batch.to(self.device))
                    out[chunk] = features.detach().to("cpu", torch.float64).numpy()
        return out


def load_inception(path: str | os.PathLike[str], device: str = "cpu") -> InceptionFeatureModel:
    """The model for ``path`` on ``device``, loaded once per process (an :class:`InceptionUnavailable` saying why
    it cannot be)."""
    key = (os.fspath(path), device)
    with _lock:
        if key not in _loaded:
            _loaded[key] = InceptionFeatureModel.from_weights(key[0], device=device)
        return _loaded[key]


def forget_loaded() -> None:
    """Drop the loaded models (tests; a worker that must free the memory)."""
    with _lock:
        _loaded.clear()
