"""Base models, model versions, prompts and prompt sets, and generated images."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q


class BaseModel(models.Model):
    """A diffusers checkpoint: a hub id (``stable-diffusion-v1-5/stable-diffusion-v1-5``) or a local folder."""

    name = models.SlugField(max_length=100, unique=True)
    source = models.CharField(max_length=500, help_text="Hub id or local path of the diffusers checkpoint")
    revision = models.CharField(max_length=100, blank=True, default="")
    pipeline_class = models.CharField(
        max_length=100, default="AutoPipelineForText2Image", help_text="diffusers pipeline class to load with"
    )
    default_settings = models.JSONField(
        default=dict, blank=True, help_text="Sampler defaults: scheduler, steps, guidance_scale, width, height"
    )
    description = models.TextField(blank=True, default="")
    watermark = models.BooleanField(
        default=True,
        help_text="Mark its generated images with the invisible watermark (instance + image id; images of at "
        "least 256×256 pixels). Text metadata is written either way.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def family(self) -> str:
        """``flow`` (SD3, FLUX: Flow-GRPO, the ``flow_euler`` sampler), ``diffusion`` (SD 1/2/XL: DDPO, DDIM...),
        or ``unknown`` for an auto pipeline class (the checkpoint says when it loads)."""
        from generators.pipeline_classes import model_family

        return model_family(self.pipeline_class)


class ModelVersion(models.Model):
    """A base checkpoint plus an optional LoRA adapter. Immutable once created; lineage via ``parent``."""

    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="versions")
    name = models.CharField(max_length=200)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    adapter = models.ForeignKey(
        "core.Artifact",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="model_versions",
        help_text="LoRA adapter in diffusers format (None: the base checkpoint as is)",
    )
    produced_by_run = models.ForeignKey(
        "core.Run", null=True, blank=True, on_delete=models.PROTECT, related_name="produced_versions"
    )
    notes = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["base_model", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["base_model", "name"], name="model_version_unique_name"),
            models.CheckConstraint(condition=~Q(parent=models.F("id")), name="model_version_not_own_parent"),
        ]

    def __str__(self) -> str:
        return f"{self.base_model.name}/{self.name}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None and not kwargs.pop("allow_update", False):
            raise ValidationError("Model versions are immutable: create a new version instead of changing one.")
        super().save(*args, **kwargs)


class ModelAlias(models.Model):
    """A movable name (``champion``) that points at one model version."""

    name = models.SlugField(max_length=50, unique=True)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "model aliases"

    def __str__(self) -> str:
        return f"{self.name} -> {self.version}"


class AliasChange(models.Model):
    """The audit log of alias moves: who pointed which alias at which version, when and why."""

    alias = models.SlugField(max_length=50)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    previous_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reason = models.TextField(blank=True, default="")
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [models.Index(fields=["alias", "-changed_at"])]

    def __str__(self) -> str:
        return f"{self.alias}: {self.previous_version_id} -> {self.version_id}"


class Split(models.TextChoices):
    TRAIN = "train", "train (fine-tuning)"
    EVAL = "eval", "eval (comparison)"


class Prompt(models.Model):
    """A prompt text. Its split is fixed: the same text can never be both a train and an eval prompt."""

    text = models.TextField(unique=True)
    split = models.CharField(max_length=8, choices=Split.choices)
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(split__in=Split.values), name="prompt_split_valid"),
            models.CheckConstraint(condition=~Q(text=""), name="prompt_text_not_empty"),
        ]

    def __str__(self) -> str:
        return self.text[:80]


class PromptSet(models.Model):
    """A named, ordered set of prompts of one split."""

    name = models.SlugField(max_length=100, unique=True)
    split = models.CharField(max_length=8, choices=Split.choices)
    description = models.TextField(blank=True, default="")
    prompts = models.ManyToManyField(Prompt, through="PromptSetItem", related_name="prompt_sets")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PromptSetItem(models.Model):
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.CASCADE, related_name="items")
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="set_items")
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["prompt_set", "position"]
        constraints = [
            models.UniqueConstraint(fields=["prompt_set", "prompt"], name="prompt_set_item_unique_prompt"),
            models.UniqueConstraint(fields=["prompt_set", "position"], name="prompt_set_item_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.prompt_set_id}#{self.position}"


class GeneratedImage(models.Model):
    """One image, reproducible from (model version, prompt, seed, settings) alone.

    The file is content-addressed (its path contains its sha256); (version, prompt, seed, settings)
    is unique, so a rerun or a redelivered generation task never makes a second row.
    """

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="images")
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="images")
    seed = models.BigIntegerField()
    settings = models.JSONField(help_text="Sampler settings used: scheduler, steps, guidance_scale, size...")
    settings_hash = models.CharField(max_length=64, help_text="sha256 of the canonical JSON of settings")
    file = models.FileField(max_length=500)
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    generation_run = models.ForeignKey(
        "core.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="generated_images"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "prompt", "seed", "settings_hash"], name="generated_image_unique_key"
            ),
            models.CheckConstraint(condition=Q(width__gt=0) & Q(height__gt=0), name="generated_image_size_positive"),
        ]
        indexes = [models.Index(fields=["sha256"])]

    def __str__(self) -> str:
        return f"{self.model_version} | {self.prompt} | seed {self.seed}"


class ImageScreening(models.Model):
    """A safety screen's verdict on a generated image (``generators.safety_screens``): flagged with a reason, or
    not. One per (image, screen), written once: a rerun keeps the first verdict.

    Deleting an image deletes its verdicts (CASCADE, as ``rewards.ImageScore``): a verdict is derived from the image
    and means nothing without it; records that must outlive a decision (a withheld pair) protect the image
    themselves.
    """

    image = models.ForeignKey(GeneratedImage, on_delete=models.CASCADE, related_name="screenings")
    screen = models.CharField(max_length=100, help_text="the registered safety screen's name")
    flagged = models.BooleanField()
    reason = models.CharField(max_length=200, blank=True, default="", help_text="why it was flagged (empty if not)")
    run = models.ForeignKey("core.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["image", "screen"], name="image_screening_unique"),
            models.CheckConstraint(
                condition=(Q(flagged=True) & ~Q(reason="")) | (Q(flagged=False) & Q(reason="")),
                name="image_screening_reason_iff_flagged",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.screen} on image {self.image_id}: {self.reason if self.flagged else 'passed'}"


class PendingImageFile(models.Model):
    """A file a generate run is writing to storage whose fate is not settled yet: journaled before the write and
    removed once a row names the file in its final (stamped) form, or once it is deleted.

    An attempt killed in between leaves its entries; the run's next attempt settles them
    (``services.generated_files_recover``): files no row names are deleted, rows still naming an unstamped file
    are stamped. So a crash neither leaves stray files in storage nor images without their provenance.
    """

    run = models.ForeignKey("core.Run", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=500, help_text="the file's name in the default storage")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "name"])]

    def __str__(self) -> str:
        return f"{self.name} (run {self.run_id})"
