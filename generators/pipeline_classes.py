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


# Pipelines that sample by flow matching (a ``FlowMatch...`` scheduler and a transformer): SD3/SD3.5, FLUX and
# their successors. They sample with ``flow_euler`` only, and the ``finetune`` run tunes them with Flow-GRPO.
FLOW_MATCHING_PIPELINES = frozenset(
    {
        "AuraFlowPipeline",
        "ChromaPipeline",
        "CogView4Pipeline",
        "FluxPipeline",
        "Lumina2Pipeline",
        "QwenImagePipeline",
        "StableDiffusion3Pipeline",
    }
)
FLOW_SCHEDULERS = ("flow_euler",)  # the scheduler names (generators.pipeline.SCHEDULERS) of flow-matching models
AUTO_PIPELINES = ("AutoPipelineForText2Image", "DiffusionPipeline")  # the class comes from the checkpoint


def model_family(pipeline_class: str) -> str:
    """``flow`` (flow matching), ``diffusion`` (a noise-prediction sampler: SD 1/2/XL...), or ``unknown`` when the
    class is read from the checkpoint only when it loads (an auto pipeline)."""
    if pipeline_class in FLOW_MATCHING_PIPELINES:
        return "flow"
    return "unknown" if pipeline_class in AUTO_PIPELINES else "diffusion"


def scheduler_problem(pipeline_class: str, scheduler: str) -> str | None:
    """Why ``scheduler`` cannot sample a ``pipeline_class`` model (None when it can, or when the class is unknown
    until the model loads: the worker checks again)."""
    family = model_family(pipeline_class)
    if family == "flow" and scheduler not in FLOW_SCHEDULERS:
        return f"{pipeline_class} is a flow-matching model: use the scheduler {' or '.join(FLOW_SCHEDULERS)}"
    if family == "diffusion" and scheduler in FLOW_SCHEDULERS:
        return f"{scheduler} samples flow-matching models (SD3, FLUX) only; {pipeline_class} is not one"
    return None


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
