"""Which sampler settings an image is made with: a request resolved for one model version. No Django imports.

An image's identity is (model version, prompt, seed, settings hash), and the hash is of the *resolved*
settings: the request's values, over the base model's defaults, over the checkpoint's native size, with a
concrete precision. :func:`resolve_sampler_settings` is the one place that resolution happens: the ``generate``
executor calls it with the loaded pipeline's native size, ``generators.selectors.images_for`` with the size the
first generation recorded in the base model's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from generators.pipeline import SamplerSettings

SETTING_KEYS = ("scheduler", "steps", "guidance_scale", "width", "height", "negative_prompt", "eta")
# The precisions an image can have been made in; "auto" is fp16 on CUDA and fp32 on the CPU (the worker decides).
CONCRETE_DTYPES = ("fp16", "fp32", "bf16")


@dataclass(frozen=True)
class SettingsRequest:
    """Sampler settings asked for by a run, a campaign or a page; None means "the version's default"."""

    scheduler: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    negative_prompt: str | None = None
    eta: float | None = None
    dtype: str = "auto"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SettingsRequest:
        """The settings keys of a (validated) run or campaign config; other keys are ignored."""
        return cls(**{key: config[key] for key in (*SETTING_KEYS, "dtype") if config.get(key) is not None})

    def overrides(self) -> dict[str, Any]:
        """The values asked for (not the defaults)."""
        return {key: getattr(self, key) for key in SETTING_KEYS if getattr(self, key) is not None}

    def as_config(self) -> dict[str, Any]:
        """The request as ``generate`` run config keys (what a campaign records)."""
        return self.overrides() | ({"dtype": self.dtype} if self.dtype != "auto" else {})

    def with_dtype(self, dtype: str) -> SettingsRequest:
        return replace(self, dtype=dtype)


def resolve_sampler_settings(
    defaults: Mapping[str, Any], request: SettingsRequest, *, dtype: str, native_size: int | None = None
) -> SamplerSettings | None:
    """Request over the base model's ``defaults`` over ``native_size``, in precision ``dtype`` (concrete).

    None when the size is still unknown (no width/height asked for, in the defaults, or native): no image of
    the version can have these settings yet. Invalid values raise ValueError.
    """
    merged: dict[str, Any] = {"width": native_size, "height": native_size} if native_size else {}
    merged |= {key: value for key, value in defaults.items() if key in SETTING_KEYS}
    merged |= request.overrides()
    if merged.get("width") is None or merged.get("height") is None:
        return None
    return SamplerSettings(**merged, dtype=dtype)
