"""Reads of base models, versions, prompt sets and images, and the plain specs ML code needs."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from core.storage import artifact_as_file_named
from generators.models import AliasChange, BaseModel, GeneratedImage, ModelAlias, ModelVersion, Prompt, PromptSet
from generators.pipeline import PipelineSpec


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


LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # what diffusers' load_lora_weights(folder) looks for


def pipeline_spec_for(version: ModelVersion, *, device: str = "auto", dtype: str = "auto") -> PipelineSpec:
    """The plain description of the pipeline that renders ``version`` (checkpoint + adapter file)."""
    base = version.base_model
    adapter_path = adapter_weight_name = None
    if version.adapter_id is not None:
        local = artifact_as_file_named(version.adapter, LORA_WEIGHT_NAME)
        adapter_path, adapter_weight_name = str(local.parent), local.name
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
