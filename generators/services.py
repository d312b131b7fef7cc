"""Every write to base models, versions, prompt sets and generated images."""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from PIL import Image

from core.models import Artifact, Run
from core.uniqueness import create_named
from generators import watermark
from generators.models import (
    AliasChange,
    BaseModel,
    GeneratedImage,
    ImageScreening,
    ModelAlias,
    ModelVersion,
    PendingImageFile,
    Prompt,
    PromptSet,
    PromptSetItem,
)
from generators.pipeline_classes import UnknownPipelineClass, check_pipeline_class
from generators.png_metadata import png_with_metadata, read_metadata
from generators.safety_screens import MAX_REASON, ScreenVerdict

BASE_VERSION_NAME = "base"


# A Hugging Face Hub repository id: owner/name, each at most 96 letters, digits, '-', '_' or '.'.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")


def _exists(path: Path, *, file: bool = False) -> bool:
    """Whether ``path`` exists (as a file if ``file``); a name the file system cannot hold (too long) does not."""
    try:
        return path.is_file() if file else path.exists()
    except (OSError, ValueError):
        return False


def _check_source(source: str) -> None:
    """A local source must be a diffusers folder; anything else is taken as a hub id (org/name)."""
    looks_local = source.startswith(("/", ".", "~")) or _exists(Path(source))
    if looks_local:
        if not _exists(Path(source).expanduser() / "model_index.json", file=True):
            raise ValidationError({"source": [f"No diffusers checkpoint at {source!r}: model_index.json is missing."]})
    elif not HUB_ID.fullmatch(source):
        raise ValidationError(
            {"source": [f"{source!r} is neither a local diffusers folder nor a hub id of the form 'org/name'."]}
        )


def base_model_register(
    *,
    name: str,
    source: str,
    created_by=None,
    revision: str = "",
    pipeline_class: str = "AutoPipelineForText2Image",
    default_settings: Mapping[str, Any] | None = None,
    description: str = "",
    watermark: bool = True,
) -> BaseModel:
    """Register a checkpoint and its ``base`` model version (the checkpoint with no adapter); ``watermark``:
    whether its generated images carry the invisible watermark."""
    _check_source(source)
    try:
        check_pipeline_class(pipeline_class, settings.EXTRA_PIPELINE_CLASSES)
    except UnknownPipelineClass as exc:
        raise ValidationError({"pipeline_class": [str(exc)]}) from exc

    def create() -> BaseModel:
        base = BaseModel.objects.create(
            name=name,
            source=source,
            revision=revision,
            pipeline_class=pipeline_class,
            default_settings=dict(default_settings or {}),
            description=description,
            watermark=watermark,
            created_by=created_by,
        )
        ModelVersion.objects.create(base_model=base, name=BASE_VERSION_NAME, created_by=created_by)
        return base

    return create_named(BaseModel, name, "base model", create)


def base_model_record_native_size(*, base_model: BaseModel, size: int) -> BaseModel:
    """Complete the base model's default width/height with the checkpoint's native size (what generation uses
    when neither a run nor the defaults name a size), so readers resolve image settings without loading it.
    Sizes already in the defaults are kept (and then no lock is taken)."""
    if all(base_model.default_settings.get(side) is not None for side in ("width", "height")):
        return base_model
    with transaction.atomic():
        locked = BaseModel.objects.select_for_update().get(pk=base_model.pk)
        missing = {side: size for side in ("width", "height") if locked.default_settings.get(side) is None}
        if missing:
            locked.default_settings = {**locked.default_settings, **missing}
            locked.save(update_fields=["default_settings"])
    base_model.default_settings = locked.default_settings
    return locked


def model_version_create(
    *,
    base_model: BaseModel,
    name: str,
    parent: ModelVersion | None = None,
    adapter: Artifact | None = None,
    produced_by_run: Run | None = None,
    notes: str = "",
    created_by=None,
) -> ModelVersion:
    """Record a new immutable version of ``base_model``: the checkpoint plus an optional LoRA adapter.

    Names are unique per base model; a taken name (even one taken by a concurrent request) is a
    ValidationError on ``name``, never an IntegrityError.
    """
    if parent is not None and parent.base_model_id != base_model.pk:
        raise ValidationError({"parent": [f"{parent} is not a version of {base_model.name}."]})

    def create() -> ModelVersion:
        return ModelVersion.objects.create(
            base_model=base_model,
            name=name,
            parent=parent,
            adapter=adapter,
            produced_by_run=produced_by_run,
            notes=notes,
            created_by=created_by,
        )

    return create_named(ModelVersion, name, f"version of {base_model.name}", create, scope={"base_model": base_model})


def model_alias_set(*, name: str, version: ModelVersion, updated_by=None, reason: str = "") -> ModelAlias:
    """Point alias ``name`` at ``version`` and record the move (who, when, why) in the audit log."""
    with transaction.atomic():
        alias = ModelAlias.objects.select_for_update().filter(name=name).first()
        previous = alias.version if alias is not None else None
        if alias is None:
            alias = ModelAlias.objects.create(name=name, version=version, updated_by=updated_by)
        elif previous != version:
            alias.version, alias.updated_by = version, updated_by
            alias.save(update_fields=["version", "updated_by", "updated_at"])
        if previous != version:
            AliasChange.objects.create(
                alias=name, version=version, previous_version=previous, changed_by=updated_by, reason=reason
            )
    return alias


def prompt_set_create(
    *, name: str, split: str, prompts: Iterable[str | Mapping[str, Any]], created_by=None, description: str = ""
) -> PromptSet:
    """Create a prompt set. A prompt text belongs to one split for ever: reusing an ``eval`` prompt in a
    ``train`` set (or the reverse) is refused, so evaluation never sees training prompts.
    """
    entries = [{"text": p, "tags": []} if isinstance(p, str) else {"tags": [], **p} for p in prompts]
    texts = [entry["text"].strip() for entry in entries]
    if not texts:
        raise ValidationError({"prompts": ["A prompt set needs at least one prompt."]})
    if any(not text for text in texts):
        raise ValidationError({"prompts": ["Prompts must not be empty."]})
    if len(set(texts)) != len(texts):
        raise ValidationError({"prompts": ["Each prompt may appear only once in a set."]})

    def create() -> PromptSet:
        clashes = list(Prompt.objects.filter(text__in=texts).exclude(split=split).values_list("text", flat=True)[:5])
        if clashes:
            raise ValidationError(
                {"prompts": [f"These prompts already belong to another split and cannot be {split} prompts: {clashes}"]}
            )
        prompt_set = PromptSet.objects.create(name=name, split=split, description=description, created_by=created_by)
        for position, (text, entry) in enumerate(zip(texts, entries, strict=True)):
            prompt, _ = Prompt.objects.get_or_create(text=text, defaults={"split": split, "tags": list(entry["tags"])})
            PromptSetItem.objects.create(prompt_set=prompt_set, prompt=prompt, position=position)
        return prompt_set

    return create_named(PromptSet, name, "prompt set", create)


def image_file_name(sha256: str) -> str:
    return f"images/{sha256[:2]}/{sha256}.png"


def generated_images_store_batch(
    *,
    model_version: ModelVersion,
    settings: Mapping[str, Any],
    settings_hash: str,
    images: Iterable[tuple[Prompt, int, bytes, int, int]],
    generation_run=None,
    provenance: bool = False,
) -> int:
    """Store a batch of generated PNGs of one version and settings; returns how many rows were new.

    ``images`` holds (prompt, seed, png, width, height). Files are content-addressed and rows unique per
    (version, prompt, seed, settings): one bulk insert in one transaction, and keys that exist already
    (a rerun, a redelivered task, another worker) are left as they are. With ``provenance`` (what a generate
    run asks for), each PNG carries its provenance as text chunks and, once its row has an id, the invisible
    watermark (``generated_images_stamp``).

    With a ``generation_run``, the files are journaled (``PendingImageFile``) before they are written and settled
    once their rows (stamped, with ``provenance``) name them, so a killed attempt's leftovers are settled by the
    next (``generated_files_recover``).
    """
    images = list(images)
    if provenance:
        images = [
            (prompt, seed, _with_provenance_text(png, model_version, prompt, seed, settings, generation_run), w, h)
            for prompt, seed, png, w, h in images
        ]
    rows, files = [], []
    for prompt, seed, png, width, height in images:
        digest = hashlib.sha256(png).hexdigest()
        files.append((image_file_name(digest), png))
        rows.append(
            GeneratedImage(
                model_version=model_version,
                prompt=prompt,
                seed=seed,
                settings=dict(settings),
                settings_hash=settings_hash,
                file=files[-1][0],
                sha256=digest,
                width=width,
                height=height,
                generation_run=generation_run,
            )
        )
    names = [name for name, _ in files]
    _journal(generation_run, names)
    for name, png in files:
        if not default_storage.exists(name):
            default_storage.save(name, ContentFile(png))
    keys = GeneratedImage.objects.filter(
        model_version=model_version,
        settings_hash=settings_hash,
        prompt__in={row.prompt_id for row in rows},
        seed__in={row.seed for row in rows},
    )
    with transaction.atomic():
        before = keys.count()
        GeneratedImage.objects.bulk_create(rows, ignore_conflicts=True)
        made = keys.count() - before
        if not provenance:  # with the insert: nothing of this batch is left to settle
            _settle(generation_run, names)
    if provenance:
        generated_images_stamp(sha256s=[row.sha256 for row in rows], run=generation_run)
        _settle(generation_run, names)  # stamping settled the rows it switched; these are the keys made before
    _delete_unnamed(names)
    return made


def _journal(run: Run | None, names: Iterable[str]) -> None:
    """Record that ``run`` is about to write these files (committed before the writes)."""
    if run is not None:
        PendingImageFile.objects.bulk_create([PendingImageFile(run=run, name=name) for name in names])


def _settle(run: Run | None, names: Iterable[str]) -> None:
    if run is not None:
        PendingImageFile.objects.filter(run=run, name__in=list(names)).delete()


def _delete_unnamed(names: Iterable[str]) -> int:
    """Delete those of these files that no image row names (a key another attempt or worker made first keeps
    its own file; the copy just written is not needed); returns how many were deleted."""
    names = set(names)
    named = set(GeneratedImage.objects.filter(file__in=names).values_list("file", flat=True))
    deleted = 0
    for name in names - named:
        if default_storage.exists(name):
            default_storage.delete(name)
            deleted += 1
    return deleted


def generated_files_recover(*, run: Run) -> dict[str, int]:
    """Settle what an earlier attempt of ``run`` left unsettled (journaled in ``PendingImageFile``): rows that
    still name an unstamped file are stamped, files that no row names are deleted. Returns
    ``{"stamped", "deleted"}``; a no-op (one query) when nothing is pending."""
    pending = set(PendingImageFile.objects.filter(run=run).values_list("name", flat=True))
    if not pending:
        return {"stamped": 0, "deleted": 0}
    unstamped = GeneratedImage.objects.filter(file__in=pending).values_list("sha256", flat=True)
    stamped = generated_images_stamp(sha256s=list(unstamped), run=run)
    deleted = _delete_unnamed(pending)
    _settle(run, pending)
    return {"stamped": stamped, "deleted": deleted}


def _provenance_fields(
    version: ModelVersion, prompt: Prompt, seed: int, sampler_settings: Mapping[str, Any], run
) -> dict[str, str]:
    adapter = version.adapter
    return {
        "version_id": str(version.pk),
        "version": str(version),
        "base_checkpoint": version.base_model.source,
        "base_revision": version.base_model.revision,
        "adapter_sha256": adapter.sha256 if adapter is not None else "",
        "prompt": prompt.text,
        "seed": str(seed),
        "sampler_settings": json.dumps(dict(sampler_settings), sort_keys=True, separators=(",", ":")),
        "run_id": str(run.pk) if run is not None else "",
        "platform_instance": str(settings.PROVENANCE_INSTANCE),
    }


def _with_provenance_text(png: bytes, version, prompt, seed, sampler_settings, run) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        return png_with_metadata(image, _provenance_fields(version, prompt, seed, sampler_settings, run))


def generated_images_stamp(*, sha256s: Iterable[str], run: Run | None = None) -> int:
    """Give the generated images whose files have these hashes their final provenance: the image id in the
    text chunks and, when the base model has ``watermark`` on and the image has at least 256×256 pixels, the
    invisible watermark of (``PROVENANCE_INSTANCE``, image id). Returns how many rows were switched.

    Runs after the rows exist (the mark needs the id) and outside the insert's transaction (marking takes
    a few tenths of a second per 512×512 image). Each row is switched to its new file only if it still holds
    the file it was stamped from, so two workers stamping the same row write the same bytes once; the
    unstamped file is removed when no row names it any more. A row whose file carries its own image id already
    is left as it is. With ``run``, each stamped file is journaled before it is written (see
    ``generated_images_store_batch``).
    """
    switched = 0
    rows = GeneratedImage.objects.filter(sha256__in=list(sha256s)).select_related(
        "model_version__base_model", "model_version__adapter", "prompt", "generation_run"
    )
    for row in rows:
        with row.file.open("rb") as handle, Image.open(handle) as opened:
            opened.load()
            fields = read_metadata(opened)
            if fields.get("image_id") == str(row.pk):
                continue  # stamped already (a recovered attempt, another worker)
            fields["image_id"] = str(row.pk)
            image = opened.convert("RGB")
        fields["watermark"], image = _watermarked(row, image)
        png = png_with_metadata(image, fields)
        digest = hashlib.sha256(png).hexdigest()
        name = image_file_name(digest)
        _journal(run, [name])
        if not default_storage.exists(name):
            default_storage.save(name, ContentFile(png))
        old_name = row.file.name
        with transaction.atomic():
            updated = GeneratedImage.objects.filter(pk=row.pk, sha256=row.sha256).update(file=name, sha256=digest)
        switched += updated
        if updated:
            _delete_unnamed([old_name])
        _settle(run, [name, old_name])
    return switched


def _watermarked(row: GeneratedImage, image: Image.Image) -> tuple[str, Image.Image]:
    """(what the ``watermark`` field says, the image to store) for a stored generated image."""
    if not row.model_version.base_model.watermark:
        return f"none: off for base model {row.model_version.base_model.name}", image
    if not watermark.can_mark(image.width, image.height):
        return f"none: a {image.width}x{image.height} image is under the 256x256 pixels the mark needs", image
    if row.pk > watermark.MAX_IMAGE_ID:
        return "none: the image id does not fit the mark's 32 bits", image
    bits = watermark.payload_bits(settings.PROVENANCE_INSTANCE, row.pk)
    return f"dwtDctSvd instance={settings.PROVENANCE_INSTANCE} image_id={row.pk}", watermark.embed(image, bits)


def image_screenings_record(*, run: Run | None, screen: str, verdicts: Mapping[int, ScreenVerdict]) -> int:
    """Store ``screen``'s verdicts by image id; returns how many rows were new.

    Idempotent: an (image, screen) that has a verdict already (a rerun, a redelivered task, another worker) keeps
    the first one. One bulk insert in one transaction.
    """
    rows = []
    for image_id, verdict in verdicts.items():
        if verdict.flagged != bool(verdict.reason) or len(verdict.reason) > MAX_REASON:
            raise ValueError(f"A verdict is flagged with a reason of 1-{MAX_REASON} characters, or neither: {verdict}")
        rows.append(
            ImageScreening(image_id=image_id, screen=screen, flagged=verdict.flagged, reason=verdict.reason, run=run)
        )
    keys = ImageScreening.objects.filter(screen=screen, image_id__in=list(verdicts))
    with transaction.atomic():
        before = keys.count()
        ImageScreening.objects.bulk_create(rows, ignore_conflicts=True)
        return keys.count() - before
