"""Reads of base models, versions and prompt sets."""

from django.db.models import Count, QuerySet

from generators.models import BaseModel, ModelVersion, PromptSet


def base_models() -> QuerySet[BaseModel]:
    return BaseModel.objects.annotate(version_count=Count("versions"))


def model_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("base_model", "parent", "produced_by_run").prefetch_related("aliases")


def prompt_sets() -> QuerySet[PromptSet]:
    return PromptSet.objects.annotate(prompt_count=Count("items"))
