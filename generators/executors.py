"""The ``generate`` run: N images per prompt of a prompt set for each model version.

Idempotent: images that already exist for (version, prompt, seed, settings) are skipped, so a rerun
or a redelivered task only makes what is missing (the database rows are the checkpoint); a version whose
images all exist is not even loaded. What a killed attempt left half-written (a file no row names, a row not
stamped yet) is settled first (``services.generated_files_recover``). Cancel is checked between batches. With
``safety_screen``, every image of the run's keys that the screen has not judged yet is then screened
(``generators.screening``).
"""

from __future__ import annotations

import logging
import time

from core.jobs import JobCancelled, JobContext, JobFailed
from core.models import Run
from generators import screening, selectors, services
from generators.models import GeneratedImage, ModelVersion, Prompt
from generators.pipeline import (
    GenerationOutOfMemory,
    PipelineLoadError,
    SamplerSettings,
    default_cache,
    generate_images_splitting_on_oom,
    native_image_size,
    png_bytes,
    resolve_device,
    resolve_dtype_name,
)
from generators.sampler_settings import SettingsRequest, resolve_sampler_settings

logger = logging.getLogger(__name__)


def sampler_settings(version: ModelVersion, config: dict, pipe, dtype: str) -> SamplerSettings:
    """Run overrides, over the base model's defaults, over the pipeline's native size (recorded in the base
    model's defaults the first time, so ``selectors.images_for`` resolves the same settings without the pipeline)."""
    try:
        native = native_image_size(pipe)
    except PipelineLoadError:
        native = None  # fine when the run or the base model's defaults give width and height
    else:
        services.base_model_record_native_size(base_model=version.base_model, size=native)
    resolved = resolve_sampler_settings(
        version.base_model.default_settings, SettingsRequest.from_config(config), dtype=dtype, native_size=native
    )
    if resolved is None:
        raise ValueError(f"{type(pipe).__name__} does not say its native image size: give width and height")
    return resolved


GENERATION_SHARE = 0.85  # of the progress bar, when the run also screens its images


def generate(run: Run, ctx: JobContext) -> dict:
    screen = run.config.get("safety_screen") or ""
    if not screen:
        return generate_missing_images(run.config, ctx, run)
    result, digests, prompts = _make_missing_images(run.config, screening.ScaledProgress(ctx, 0, GENERATION_SHARE), run)
    seeds = _seeds(run.config)
    image_ids = selectors.image_ids_of(digests, [prompt.pk for prompt in prompts], seeds)
    result["screening"] = screening.screen_run_images(
        run=run,
        screen=screen,
        image_ids=image_ids,
        batch_size=run.config["batch_size"],
        ctx=screening.ScaledProgress(ctx, GENERATION_SHARE, 1),
    )
    return result


def generate_missing_images(config: dict, ctx: JobContext, run: Run | None = None) -> dict:
    """Make the images of a validated ``generate`` config that do not exist yet (``run``: recorded as their maker)."""
    return _make_missing_images(config, ctx, run)[0]


def _seeds(config: dict) -> list[int]:
    return [config["seed"] + k for k in range(config["images_per_prompt"])]


def _existing_keys(version: ModelVersion, digest: str, prompts: list[Prompt], seeds: list[int]) -> set[tuple[int, int]]:
    return set(
        GeneratedImage.objects.filter(
            model_version=version, settings_hash=digest, prompt__in=prompts, seed__in=seeds
        ).values_list("prompt_id", "seed")
    )


def _settings_without_loading(version: ModelVersion, config: dict, dtype: str) -> SamplerSettings | None:
    """The version's settings when they are known without the pipeline: the base model's defaults hold the size
    (so loading it would record nothing) and resolve; else None."""
    if any(version.base_model.default_settings.get(side) is None for side in ("width", "height")):
        return None
    return selectors.resolved_settings(version, SettingsRequest.from_config(config), dtype)


def _make_missing_images(config: dict, ctx: JobContext, run: Run | None) -> tuple[dict, dict[int, str], list[Prompt]]:
    """(the result, each version's settings hash, the prompts kept) of making what is missing."""
    if run is not None:
        recovered = services.generated_files_recover(run=run)
        if any(recovered.values()):
            logger.info("run %s: an earlier attempt's files settled: %s", run.pk, recovered)
    excluded = set(config.get("exclude_prompts") or ())
    prompts = [prompt for prompt in selectors.prompts_of(config["prompt_set"]) if prompt.pk not in excluded]
    seeds = _seeds(config)
    versions = {
        v.pk: v for v in ModelVersion.objects.filter(pk__in=config["model_versions"]).select_related("base_model")
    }
    total = len(versions) * len(prompts) * len(seeds)
    done = created = 0
    generating_seconds = 0.0
    batch_index = 0
    per_version: dict[str, dict] = {}
    digests: dict[int, str] = {}
    for version_id in config["model_versions"]:
        version = versions[version_id]
        try:
            device = resolve_device(config["device"])
            dtype = resolve_dtype_name(config["dtype"], device)
            # Loaded only when something is missing, or the settings cannot be known without it.
            pipe, settings = None, _settings_without_loading(version, config, dtype)
            existing = _existing_keys(version, settings.digest(), prompts, seeds) if settings else set()
            if settings is None or len(existing) < len(prompts) * len(seeds):
                pipe = default_cache.get(selectors.pipeline_spec_for(version, device=device, dtype=dtype))
                settings = sampler_settings(version, config, pipe, dtype)
                existing = _existing_keys(version, settings.digest(), prompts, seeds)
        except (PipelineLoadError, ValueError) as exc:
            raise JobFailed(f"Model version {version} cannot generate: {exc}") from exc
        digest = digests[version.pk] = settings.digest()
        todo = [(prompt, seed) for prompt in prompts for seed in seeds if (prompt.pk, seed) not in existing]
        done += len(prompts) * len(seeds) - len(todo)
        per_version[str(version.pk)] = {
            "name": str(version),
            "settings": settings.as_dict(),
            "created": 0,
            "already_there": len(existing),
        }
        for start in range(0, len(todo), config["batch_size"]):
            if ctx.should_stop():
                raise JobCancelled(f"stopped after {done} of {total} images")
            batch = todo[start : start + config["batch_size"]]
            began = time.perf_counter()
            try:
                pictures = generate_images_splitting_on_oom(
                    pipe, [p.text for p, _ in batch], [s for _, s in batch], settings
                )
            except GenerationOutOfMemory as exc:
                raise JobFailed(str(exc)) from exc
            made = services.generated_images_store_batch(
                model_version=version,
                settings=settings.as_dict(),
                settings_hash=digest,
                images=[
                    (prompt, seed, png_bytes(picture), picture.width, picture.height)
                    for (prompt, seed), picture in zip(batch, pictures, strict=True)
                ],
                generation_run=run,
                provenance=True,
            )
            created += made
            per_version[str(version.pk)]["created"] += made
            elapsed = time.perf_counter() - began
            generating_seconds += elapsed
            done += len(batch)
            batch_index += 1
            ctx.log_metrics(batch_index, {"images_per_second": len(batch) / elapsed, "images_done": done})
            ctx.report_progress(done / total, f"{done} of {total} images")
    result = {
        "images": total,
        "created": created,
        "already_there": total - created,
        "images_per_second": round(created / generating_seconds, 3) if generating_seconds else None,
        "versions": per_version,
    }
    return result, digests, prompts
