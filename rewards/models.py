"""Preference datasets (frozen snapshots of votes, or imported Pick-a-Pic files), reward models, image scores."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class DatasetSource(models.TextChoices):
    CAMPAIGNS = "campaigns", "snapshot of campaigns' votes"
    PARQUET = "parquet", "imported Pick-a-Pic Parquet"


class DatasetState(models.TextChoices):
    IMPORTING = "importing", "uploaded; its import run is validating it"
    READY = "ready", "validated: usable for reward training"
    FAILED = "failed", "the import found a problem (see error)"


class PreferenceDataset(models.Model):
    """An immutable Pick-a-Pic-schema Parquet file of labelled pairs: what a reward model was trained on.

    A snapshot of campaigns records every vote it holds (``ranking_id`` is the vote id), so a reward
    model can be traced to the exact votes and retrained on them. An uploaded file is stored first and
    ``importing`` until its ``dataset_import`` run (``import_run``) has validated every row: only a ``ready``
    dataset can be trained on. ``criterion`` selects the votes on one question (a campaign's question key, the
    file's ``criterion`` column): a snapshot holds only those, an imported file is read for those rows only; empty,
    the dataset is every row of its file.
    """

    name = models.CharField(max_length=200, unique=True)
    source = models.CharField(max_length=16, choices=DatasetSource.choices)
    file = models.FileField(max_length=500)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    rows = models.PositiveIntegerField()
    stats = models.JSONField(default=dict, blank=True, help_text="prompts, decisive rows, ties, annotators...")
    campaigns = models.ManyToManyField("feedback.Campaign", related_name="datasets", blank=True)
    options = models.JSONField(default=dict, blank=True, help_text="how the snapshot was taken (flagged, gold...)")
    criterion = models.CharField(
        max_length=32, blank=True, default="", help_text="the one question its rows answer ('' = every row of the file)"
    )
    original_path = models.CharField(max_length=1000, blank=True, default="")
    state = models.CharField(max_length=16, choices=DatasetState.choices, default=DatasetState.READY)
    error = models.TextField(blank=True, default="", help_text="why the import failed (never a server path)")
    import_run = models.ForeignKey(
        "core.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", help_text="the import run"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(source__in=DatasetSource.values), name="dataset_source"),
            models.CheckConstraint(condition=Q(state__in=DatasetState.values), name="dataset_state"),
        ]

    def __str__(self) -> str:
        return self.name


class RewardModel(models.Model):
    """A trained (or zero-shot) CLIP reward model, stored as a zipped ``save_pretrained`` folder."""

    name = models.CharField(max_length=200, unique=True)
    backbone = models.CharField(max_length=500, help_text="hub id or local folder of the CLIP it started from")
    dataset = models.ForeignKey(
        PreferenceDataset, null=True, blank=True, on_delete=models.PROTECT, related_name="reward_models"
    )
    training_run = models.OneToOneField(
        "core.Run", null=True, blank=True, on_delete=models.PROTECT, related_name="reward_model"
    )
    artifact = models.ForeignKey(
        "core.Artifact",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="zipped model folder (None: the zero-shot backbone as is)",
    )
    metrics = models.JSONField(default=dict, blank=True, help_text="validation/test metrics and the baseline's")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class ImageScore(models.Model):
    """A reward model's score of one generated image (for its prompt); unique per (reward model, image)."""

    reward_model = models.ForeignKey(RewardModel, on_delete=models.CASCADE, related_name="scores")
    image = models.ForeignKey("generators.GeneratedImage", on_delete=models.CASCADE, related_name="scores")
    score = models.FloatField()
    run = models.ForeignKey("core.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["reward_model", "image"]
        constraints = [models.UniqueConstraint(fields=["reward_model", "image"], name="image_score_unique")]

    def __str__(self) -> str:
        return f"{self.reward_model_id}:{self.image_id}={self.score:.4f}"


class CampaignRefit(models.Model):
    """One refit of a ``collect`` campaign's quick reward model (a ``selection_refit`` run; see ``rewards.refit``).

    Started every ``Campaign.refit_every`` valid votes (and at once for a new ``uncertainty`` campaign); at most
    one is ``active`` (queued or running) per campaign, which the database enforces. It records what the fit
    measured: the learning curve's points (:class:`CampaignCurvePoint`), zero-shot accuracy and the human ceiling
    on the same held-out prompts, and how many pairs got a hand-out priority.
    """

    campaign = models.ForeignKey("feedback.Campaign", on_delete=models.CASCADE, related_name="+")
    run = models.OneToOneField("core.Run", on_delete=models.CASCADE, related_name="campaign_refit")
    votes = models.PositiveIntegerField(help_text="valid votes of the campaign when the refit was started")
    active = models.BooleanField(default=True, help_text="its run is queued or running")
    used_votes = models.PositiveIntegerField(null=True, blank=True, help_text="votes the fit read (its first question)")
    test_votes = models.PositiveIntegerField(null=True, blank=True, help_text="decisive held-out votes of the curve")
    zero_shot_accuracy = models.FloatField(null=True, blank=True, help_text="the frozen backbone, same held-out votes")
    human_ceiling = models.FloatField(
        null=True, blank=True, help_text="decisive agreement of a vote with the other votes on its pair"
    )
    ceiling_pairs = models.PositiveIntegerField(default=0, help_text="pairs with several votes behind the ceiling")
    priorities = models.PositiveIntegerField(default=0, help_text="pairs given a hand-out priority")
    priority_source = models.CharField(max_length=16, blank=True, default="", help_text="model, zero_shot or none")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["campaign", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign"], condition=Q(active=True), name="campaign_refit_one_active"),
        ]
        indexes = [models.Index(fields=["campaign", "-votes"], name="campaign_refit_latest")]

    def __str__(self) -> str:
        return f"refit of campaign {self.campaign_id} at {self.votes} votes (run {self.run_id})"


class CampaignCurvePoint(models.Model):
    """One point of a campaign's learning curve: held-out decisive accuracy of a quick reward model fitted on the
    campaign's first ``votes`` votes (those of its training prompts: ``train_votes``)."""

    refit = models.ForeignKey(CampaignRefit, on_delete=models.CASCADE, related_name="points")
    votes = models.PositiveIntegerField()
    train_votes = models.PositiveIntegerField()
    accuracy = models.FloatField(null=True, blank=True, help_text="decisive accuracy on the held-out prompts")

    class Meta:
        ordering = ["refit", "votes"]
        constraints = [models.UniqueConstraint(fields=["refit", "votes"], name="curve_point_unique")]

    def __str__(self) -> str:
        return f"{self.votes} votes: {self.accuracy}"


class ReferenceSet(models.Model):
    """Reference images of a prompt set: what a version's images are compared with by Fréchet distance.

    Registered per prompt set (``manage.py register_reference_set``: the sandbox's rendered ground truth, a folder
    of images, or a version's images); images may name the prompt they illustrate.
    """

    name = models.SlugField(max_length=100, unique=True)
    prompt_set = models.ForeignKey("generators.PromptSet", on_delete=models.PROTECT, related_name="reference_sets")
    description = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["prompt_set", "-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class ReferenceImage(models.Model):
    """One reference image (content-addressed file), optionally of one prompt of its set's prompt set."""

    reference_set = models.ForeignKey(ReferenceSet, on_delete=models.CASCADE, related_name="images")
    prompt = models.ForeignKey("generators.Prompt", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    file = models.FileField(max_length=500)
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["reference_set", "id"]

    def __str__(self) -> str:
        return f"{self.reference_set_id}:{self.sha256[:12]}"


class MetricName(models.TextChoices):
    CLIP_SCORE = "clip_score", "CLIP score (torchmetrics' definition)"
    FID_CLIP = "fid_clip", "Fréchet distance to the reference set in CLIP image-feature space"
    FID_INCEPTION = "fid_inception", "Fréchet Inception distance (FID) to the reference set"
    DIVERSITY = "diversity", "mean pairwise cosine distance among a prompt's seeds"
    REWARD_WIN_RATE = "reward_win_rate", "win rate against the parent under a reward model"
    CLIP_SCORE_DELTA = "clip_score_delta", "CLIP score minus the parent's, per prompt"
    DIVERSITY_DELTA = "diversity_delta", "diversity minus the parent's, per prompt"


class VersionMetric(models.Model):
    """One automatic metric of a version's images of a prompt set, measured by an ``evaluate`` run: its value and
    95% bootstrap interval over prompts. Rows are kept per run; readers take the newest per metric and reward
    model (``rewards.metric_selectors``)."""

    model_version = models.ForeignKey("generators.ModelVersion", on_delete=models.CASCADE, related_name="+")
    prompt_set = models.ForeignKey("generators.PromptSet", on_delete=models.CASCADE, related_name="+")
    settings_hash = models.CharField(max_length=64, help_text="the sampler settings of the images measured")
    images_per_prompt = models.PositiveIntegerField()
    metric = models.CharField(max_length=32, choices=MetricName.choices)
    feature_model = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="the registered CLIP used (fid_inception: the weights file's name)",
    )
    reward_model = models.ForeignKey(RewardModel, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    reference_set = models.ForeignKey(
        ReferenceSet, null=True, blank=True, on_delete=models.CASCADE, related_name="metrics"
    )
    compared_with = models.ForeignKey(
        "generators.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="the parent a win rate or delta is against",
    )
    value = models.FloatField()
    low = models.FloatField(null=True, blank=True)
    high = models.FloatField(null=True, blank=True)
    prompts = models.PositiveIntegerField(help_text="prompts the value covers (the bootstrap's unit)")
    items = models.PositiveIntegerField(help_text="images (or image pairs) the value covers")
    run = models.ForeignKey("core.Run", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_version", "metric", "-id"]
        constraints = [models.CheckConstraint(condition=Q(metric__in=MetricName.values), name="version_metric_name")]
        indexes = [models.Index(fields=["prompt_set", "model_version", "metric"], name="version_metric_lookup")]

    def __str__(self) -> str:
        return f"{self.model_version_id} {self.metric}={self.value:.4f}"
