"""The diffusers pipeline classes a base model may name (checked in the web process: no diffusers, no torch).

A base model's ``pipeline_class`` is user input that a worker looks up in diffusers, so it is one of these
names (text-to-image pipelines) or one the operator lists in the ``EXTRA_PIPELINE_CLASSES`` setting; the
worker checks again when loading that the name is a diffusers pipeline class
(:func:`generators.pipeline.load_pipeline`).
"""

from __future__ import annotations

from collections.abc import Iterable

TEXT_TO_IMAGE_PIPELINES = (
    "AutoPipelineForText2Image",
    "DiffusionPipeline",
    "AuraFlowPipeline",
    "ChromaPipeline",
    "CogView3PlusPipeline",
    "CogView4Pipeline",
    "FluxPipeline",
    "HunyuanDiTPipeline",
    "IFPipeline",
    "Kandinsky3Pipeline",
    "KandinskyCombinedPipeline",
    "KandinskyV22CombinedPipeline",
    "LatentConsistencyModelPipeline",
    "Lumina2Pipeline",
    "LuminaPipeline",
    "PixArtAlphaPipeline",
    "PixArtSigmaPipeline",
    "QwenImagePipeline",
    "SanaPipeline",
    "StableCascadeCombinedPipeline",
    "StableDiffusion3Pipeline",
    "StableDiffusionPipeline",
    "StableDiffusionXLPipeline",
    "WuerstchenCombinedPipeline",
)


class UnknownPipelineClass(ValueError):
    """A name that is not an allowed diffusers pipeline class."""


def allowed_pipeline_classes(extra: Iterable[str] = ()) -> list[str]:
    """The built-in names plus the operator's ``extra`` ones, sorted."""
    return sorted({*TEXT_TO_IMAGE_PIPELINES, *extra})


def check_pipeline_class(name: str, extra: Iterable[str] = ()) -> str:
    """``name`` if it is an allowed diffusers pipeline class name; imports nothing."""
    allowed = allowed_pipeline_classes(extra)
    if name not in allowed:
        raise UnknownPipelineClass(
            f"{name!r} is not a diffusers pipeline class this platform loads. Use one of: {', '.join(allowed)} "
            "(an operator may add diffusers pipeline classes with the EXTRA_PIPELINE_CLASSES setting)."
        )
    return name
