"""Reads of base models, versions, prompt sets and images, and the plain specs ML code needs."""

from __future__ import annotations

from pathlib import Path

from django.db.models import Count, QuerySet

from core.storage import artifact_as_file_named
from generators.models import AliasChange, BaseModel, GeneratedImage, ModelAlias, ModelVersion, Prompt, PromptSet
from generators.pipeline import LORA_WEIGHT_NAME, PipelineSpec


def base_models() -> QuerySet[BaseModel]:
    return BaseModel.objects.annotate(version_count=Count("versions"))


def model_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("base_model", "parent", "produced_by_run").prefetch_related("aliases")


def prompt_sets() -> QuerySet[PromptSet]:
    return PromptSet.objects.annotate(prompt_count=Count("items"))


def prompts_of(prompt_set: PromptSet | int) -> list[Prompt]:
    """The prompts of a set in their order."""
    set_id = prompt_set.pk if isinstance(prompt_set, PromptSet) else prompt_set
    return [
        item.prompt for item in PromptSet.objects.get(pk=set_id).items.select_related("prompt").order_by("position")
    ]


def images() -> QuerySet[GeneratedImage]:
    return GeneratedImage.objects.select_related("model_version__base_model", "prompt")


def adapter_folder(version: ModelVersion) -> Path | None:
    """A local folder holding ``version``'s LoRA adapter as ``LORA_WEIGHT_NAME`` (what diffusers'
    ``load_lora_weights(folder)`` reads); None for a version without an adapter."""
    if version.adapter_id is None:
        return None
    return artifact_as_file_named(version.adapter, LORA_WEIGHT_NAME).parent


def pipeline_spec_for(
    version: ModelVersion, *, device: str = "auto", dtype: str = "auto", with_adapter: bool = True
) -> PipelineSpec:
    """The plain description of the pipeline that renders ``version``: its checkpoint and, unless
    ``with_adapter`` is false (a trainer that attaches the adapter itself), its adapter file."""
    base = version.base_model
    folder = adapter_folder(version) if with_adapter else None
    adapter_path = str(folder) if folder is not None else None
    adapter_weight_name = LORA_WEIGHT_NAME if folder is not None else None
    return PipelineSpec(
        source=base.source,
        revision=base.revision or None,
        pipeline_class=base.pipeline_class,
        adapter_path=adapter_path,
        adapter_weight_name=adapter_weight_name,
        device=device,
        dtype=dtype,
    )


def aliases() -> QuerySet[ModelAlias]:
    return ModelAlias.objects.select_related("version__base_model")


def alias_history(name: str) -> QuerySet[AliasChange]:
    """Moves of alias ``name``, newest first."""
    return AliasChange.objects.filter(alias=name).select_related("changed_by")
