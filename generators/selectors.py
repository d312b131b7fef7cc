"""Reads of base models, versions, prompt sets and images, and the plain specs ML code needs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path

from django.db.models import Count, QuerySet

from core.storage import artifact_as_file_named
from generators.models import (
    AliasChange,
    BaseModel,
    GeneratedImage,
    ImageScreening,
    ModelAlias,
    ModelVersion,
    Prompt,
    PromptSet,
)
from generators.pipeline import LORA_WEIGHT_NAME, PipelineSpec, SamplerSettings
from generators.sampler_settings import CONCRETE_DTYPES, SettingsRequest, resolve_sampler_settings

ImageKey = tuple[int, int, int]  # (model version id, prompt id, seed)
ID_CHUNK = 5000  # ids per IN (...) list: under SQLite's bound on query parameters


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


def image_file_of(pk: int) -> GeneratedImage:
    """Just enough of image ``pk`` to stream its file (one light query; DoesNotExist when unknown)."""
    return GeneratedImage.objects.only("file").get(pk=pk)


def resolved_settings(version: ModelVersion, request: SettingsRequest, dtype: str) -> SamplerSettings | None:
    """The settings ``version``'s images under ``request`` are made with, in precision ``dtype``, as the
    ``generate`` run resolves them (the native size is the one its first generation recorded); None when
    no image can have them yet (size unknown, or a default the sampler refuses)."""
    try:
        return resolve_sampler_settings(version.base_model.default_settings, request, dtype=dtype)
    except ValueError:
        return None


def images_for(
    version_ids: Iterable[int],
    prompt_ids: Iterable[int] | QuerySet,
    seeds: Iterable[int] | None,
    settings: SettingsRequest,
) -> dict[ImageKey, GeneratedImage]:
    """The image of each (version, prompt, seed) under ``settings``: the one way to pick images by key.

    Each version's settings are resolved as generation resolves them; keys with no image under them are
    absent. With ``dtype="auto"`` the precision under which the most keys have an image (all versions
    together; ties in ``CONCRETE_DTYPES`` order) is taken, so every image returned has the same precision.
    ``seeds=None``: every seed.
    """
    versions = ModelVersion.objects.filter(pk__in=list(version_ids)).select_related("base_model")
    dtypes = CONCRETE_DTYPES if settings.dtype == "auto" else (settings.dtype,)
    dtype_of: dict[tuple[int, str], str] = {}  # (version id, settings hash) -> precision
    for version in versions:
        for dtype in dtypes:
            resolved = resolved_settings(version, settings, dtype)
            if resolved is not None:
                dtype_of[(version.pk, resolved.digest())] = dtype
    if not dtype_of:
        return {}
    rows = images().filter(
        model_version_id__in={version for version, _ in dtype_of},
        settings_hash__in={digest for _, digest in dtype_of},
        prompt_id__in=prompt_ids if isinstance(prompt_ids, QuerySet) else list(prompt_ids),
    )
    if seeds is not None:
        rows = rows.filter(seed__in=list(seeds))
    by_dtype: dict[str, dict[ImageKey, GeneratedImage]] = defaultdict(dict)
    for image in rows:
        dtype = dtype_of.get((image.model_version_id, image.settings_hash))
        if dtype is not None:
            by_dtype[dtype][(image.model_version_id, image.prompt_id, image.seed)] = image
    return by_dtype[max(dtypes, key=lambda dtype: len(by_dtype[dtype]))]


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


def _chunks(ids: Iterable[int], size: int = ID_CHUNK) -> Iterator[list[int]]:
    iterator = iter(ids)
    while chunk := list(islice(iterator, size)):
        yield chunk


def image_ids_of(digests: Mapping[int, str], prompt_ids: Iterable[int], seeds: Iterable[int]) -> list[int]:
    """The ids of the images of each version (``digests``: version id -> settings hash) × ``prompt_ids`` ×
    ``seeds`` that exist, in id order (what a ``generate`` run's keys are once it has made them)."""
    prompt_ids, seeds = list(prompt_ids), list(seeds)
    found: list[int] = []
    for version_id, digest in digests.items():
        rows = GeneratedImage.objects.filter(model_version_id=version_id, settings_hash=digest, seed__in=seeds)
        for chunk in _chunks(prompt_ids):
            found += rows.filter(prompt_id__in=chunk).values_list("pk", flat=True)
    return sorted(found)


def screen_flags(image_ids: Iterable[int], screen: str) -> dict[int, str]:
    """Image id -> reason, for the images of ``image_ids`` that ``screen`` flagged (passed and unscreened images
    are absent)."""
    flags: dict[int, str] = {}
    for chunk in _chunks(dict.fromkeys(image_ids)):
        rows = ImageScreening.objects.filter(screen=screen, flagged=True, image_id__in=chunk)
        flags.update(rows.values_list("image_id", "reason"))
    return flags


def unscreened(image_ids: Iterable[int], screen: str) -> list[int]:
    """The ids of ``image_ids`` (in their order, each once) that have no verdict of ``screen`` yet."""
    ids = list(dict.fromkeys(image_ids))
    screened: set[int] = set()
    for chunk in _chunks(ids):
        screened.update(
            ImageScreening.objects.filter(screen=screen, image_id__in=chunk).values_list("image_id", flat=True)
        )
    return [pk for pk in ids if pk not in screened]
