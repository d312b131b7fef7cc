"""Runs (the durable record of every job), their metric points and their artifacts."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.run_states import TERMINAL_STATES, RunState


class RunKindName(models.TextChoices):
    DIAGNOSTIC = "diagnostic"
    GENERATE = "generate"
    REWARD_TRAIN = "reward_train"
    FINETUNE = "finetune"
    PREFERENCE_TUNE = "preference_tune"
    EVALUATE = "evaluate"
    DATASET_IMPORT = "dataset_import"
    SELECTION_REFIT = "selection_refit"


class Run(models.Model):
    """One job: what it was asked to do (kind + config), where it stands, and what it produced.

    The row is the truth; Celery only delivers the id. ``attempts`` counts claims by a worker and
    doubles as a fencing token: a worker whose attempt was superseded can no longer write.
    """

    kind = models.CharField(max_length=32, choices=RunKindName.choices)
    config = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.QUEUED)
    state_history = models.JSONField(default=list, help_text="[{state, at, attempt, note}] oldest first")
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=200, blank=True, default="")
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    queue = models.CharField(max_length=32, default="default")
    celery_task_id = models.CharField(max_length=64, blank=True, default="")
    worker = models.CharField(max_length=200, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    redispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="When a stale run was last sent to its queue again"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "kind"]), models.Index(fields=["created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(progress__gte=0.0) & Q(progress__lte=1.0), name="run_progress_0_1"),
            models.CheckConstraint(condition=Q(state__in=RunState.values), name="run_state_valid"),
            models.CheckConstraint(condition=Q(kind__in=RunKindName.values), name="run_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.kind}, {self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class MetricPoint(models.Model):
    """One value of one metric series at one step. (run, key, step) is unique: a retried step overwrites.

    A non-finite value (a loss that diverged) is stored as null, which every database and JSON can hold.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metric_points")
    key = models.CharField(max_length=100)
    step = models.IntegerField()
    value = models.FloatField(null=True, help_text="null when the value was not finite (NaN or infinite)")
    attempt = models.PositiveIntegerField(default=0, help_text="the run's attempt that wrote it (0: not recorded)")
    recorded_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run", "key", "step"]
        constraints = [models.UniqueConstraint(fields=["run", "key", "step"], name="metric_point_unique_step")]

    def __str__(self) -> str:
        return f"{self.key}[{self.step}]={self.value}"


class Artifact(models.Model):
    """A file a run produced (checkpoint, adapter, report, image grid...). (run, name) is unique."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="artifacts")
    kind = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    file = models.FileField(max_length=500)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    metadata = models.JSONField(default=dict, blank=True)
    attempt = models.PositiveIntegerField(default=0, help_text="the run's attempt that wrote it (0: not recorded)")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run", "name"]
        constraints = [
            models.UniqueConstraint(fields=["run", "name"], name="artifact_unique_name_per_run"),
            models.CheckConstraint(condition=Q(size__gte=0), name="artifact_size_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"{self.name} of run {self.run_id}"


class AnnotatorGroup(models.Model):
    """A named set of users (a team of annotators) that a campaign can be given instead of naming each one; the
    campaign takes the members it is created with (``feedback.api.CampaignCreateSerializer.annotator_groups``)."""

    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="annotator_groups", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Invite(models.Model):
    """A single-use link by which a new annotator makes their own account (``core.services.invite_create`` and
    ``invite_accept``). Only the SHA-256 of its random token is stored: the link is shown once, to its creator.
    The account joins ``group`` when one was chosen at invite time."""

    token_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 hex of the link's token")
    group = models.ForeignKey(AnnotatorGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="invites")
    note = models.CharField(max_length=200, blank=True, default="", help_text="whom it is for (shown on /people/)")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="invites_created"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="invites_used"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("created_at")), name="invite_expires_later"),
        ]

    def __str__(self) -> str:
        return f"invite {self.pk}" + (f" ({self.note})" if self.note else "")
