"""Campaigns, comparison pairs, assignments (leases) and votes.

Invariants live in the database: one vote per (annotator, pair, criterion) and per (assignment, criterion), one
assignment per (annotator, pair), a pair's two images differ, choices and purposes are from their lists.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from feedback.criteria import DEFAULT_CRITERION, KEY_MAX_LENGTH, default_questions


class Purpose(models.TextChoices):
    COLLECT = "collect", "collect votes for reward training"
    ARENA = "arena", "compare versions blind"


class Selection(models.TextChoices):
    """How the hand-out picks among a campaign's pairs without votes (see ``feedback/handout.py``)."""

    RANDOM = "random", "in creation order (no model)"
    UNCERTAINTY = "uncertainty", "highest priority first (the refit job's reward model is least sure there)"


REFIT_EVERY_RANGE = (10, 100_000)


class CampaignStatus(models.TextChoices):
    DRAFT = "draft"
    PREPARING = "preparing", "preparing (generating its images)"
    OPEN = "open"
    CLOSED = "closed"


class Campaign(models.Model):
    name = models.CharField(max_length=200, unique=True)
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    prompt_set = models.ForeignKey("generators.PromptSet", on_delete=models.PROTECT, related_name="campaigns")
    model_versions = models.ManyToManyField("generators.ModelVersion", related_name="campaigns")
    votes_per_pair = models.PositiveIntegerField(default=3, help_text="k: valid (non-skip) votes wanted per pair")
    gold_rate = models.FloatField(default=0.0, help_text="share of hand-outs that are gold pairs")
    lease_seconds = models.PositiveIntegerField(default=300)
    selection = models.CharField(
        max_length=16, choices=Selection.choices, default=Selection.RANDOM, help_text="hand-out order of fresh pairs"
    )
    refit_every = models.PositiveIntegerField(
        default=200, help_text="valid votes between two refits of the campaign's quick reward model (priorities, curve)"
    )
    images_per_prompt = models.PositiveIntegerField(
        default=2, help_text="images of each version per prompt (seeds 0..n-1) generated if missing"
    )
    sampler_settings = models.JSONField(
        default=dict,
        blank=True,
        help_text="sampler settings of its images, as generate-run keys (absent: each version's default)",
    )
    questions = models.JSONField(
        default=default_questions,
        help_text="the 1-4 questions asked about each pair, in order: [{key (the votes' criterion), text}]",
    )
    preparing_run = models.ForeignKey(
        "core.Run",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="the generation run making this campaign's missing images",
    )
    status_note = models.CharField(
        max_length=500, blank=True, default="", help_text="why the campaign is in its status (e.g. back to draft)"
    )
    blocked_terms = models.JSONField(
        default=list,
        blank=True,
        help_text="words or phrases (case-insensitive, whole words): prompts that contain one are left out",
    )
    safety_screen = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="a registered safety screen that checks its images before annotators see them (blank: none)",
    )
    annotators = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="campaigns", blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=1), name="campaign_gold_rate_0_1"),
            models.CheckConstraint(condition=Q(votes_per_pair__gte=1), name="campaign_k_positive"),
            models.CheckConstraint(condition=Q(purpose__in=Purpose.values), name="campaign_purpose_valid"),
            models.CheckConstraint(condition=Q(selection__in=Selection.values), name="campaign_selection_valid"),
            models.CheckConstraint(
                condition=Q(refit_every__gte=REFIT_EVERY_RANGE[0]) & Q(refit_every__lte=REFIT_EVERY_RANGE[1]),
                name="campaign_refit_every_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Choice(models.TextChoices):
    """A vote against the pair's images: ``a`` is ``Pair.image_a`` whichever side it was shown on."""

    A = "a"
    B = "b"
    TIE = "tie"
    BOTH_BAD = "both_bad"
    SKIP = "skip"


class Pair(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="pairs")
    image_a = models.ForeignKey("generators.GeneratedImage", on_delete=models.PROTECT, related_name="+")
    image_b = models.ForeignKey("generators.GeneratedImage", on_delete=models.PROTECT, related_name="+")
    is_gold = models.BooleanField(default=False)
    gold_choice = models.CharField(max_length=16, choices=Choice.choices, blank=True, default="")
    valid_votes = models.PositiveIntegerField(
        default=0, help_text="non-skip votes so far (kept in the vote's transaction)"
    )
    priority = models.FloatField(
        default=0.0, help_text="hand-out order of fresh pairs in uncertainty campaigns (highest first; refit job)"
    )
    withdrawn = models.BooleanField(
        default=False,
        help_text="an image of the pair is withheld (reported or screened: ImageFlag): never handed out again, its "
        "votes left out of training and progress",
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=~Q(image_a=F("image_b")), name="pair_images_differ"),
            models.UniqueConstraint(fields=["campaign", "image_a", "image_b"], name="pair_unique_per_campaign"),
            models.CheckConstraint(condition=Q(is_gold=False) | ~Q(gold_choice=""), name="gold_pair_has_answer"),
        ]
        # Matches the hand-out's ORDER BY, so "the next pair" stops at the first row that qualifies.
        indexes = [
            models.Index(fields=["campaign", "is_gold", "-valid_votes", "id"], name="pair_handout_order"),
            # Only pairs without votes: the uncertainty hand-out's fresh band walks it in priority order, and a
            # pair leaves it with its first vote (so the walk never steps over pairs already started).
            models.Index(
                fields=["campaign", "is_gold", "-priority", "id"],
                condition=Q(valid_votes=0),
                name="pair_fresh_priority",
            ),
        ]

    def __str__(self) -> str:
        return f"pair {self.pk} ({self.image_a_id} vs {self.image_b_id})"


class AssignmentStatus(models.TextChoices):
    LEASED = "leased"
    VOTED = "voted"


def new_image_token() -> str:
    """An unguessable token for an assignment's image URLs (128 random bits, URL-safe)."""
    return secrets.token_urlsafe(16)


class Assignment(models.Model):
    """A pair leased to one annotator until ``expires_at``; ``a_on_left`` records the random side.

    The rater sees the pair's images only as ``image_token`` + side: no image ids, nothing that orders
    the versions (image ids grow with generation order, so they would unblind an arena).
    """

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    a_on_left = models.BooleanField()
    image_token = models.CharField(
        max_length=32,
        unique=True,
        default=new_image_token,
        editable=False,
        help_text="opaque name of this assignment's images in URLs (the rater's, for its left and right side)",
    )
    status = models.CharField(max_length=16, choices=AssignmentStatus.choices, default=AssignmentStatus.LEASED)
    leased_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["pair", "annotator"], name="assignment_one_per_annotator_pair"),
        ]
        indexes = [models.Index(fields=["pair", "status", "expires_at"]), models.Index(fields=["annotator", "status"])]

    def __str__(self) -> str:
        return f"assignment {self.pk} of pair {self.pair_id} to {self.annotator_id}"


class Vote(models.Model):
    """One answer of a rater to one question (``criterion``) about their assignment's pair.

    A submission answers every question of the pair at once and is stored as one row per criterion in one
    transaction (a skip too: one ``skip`` row per criterion); see ``feedback.services.vote_submit``.
    """

    # No index of its own: the unique (assignment, criterion) index serves lookups by assignment (one less index
    # to write per vote row on the annotators' hot path).
    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="votes", db_index=False)
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="votes")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="votes")
    criterion = models.CharField(
        max_length=KEY_MAX_LENGTH, default=DEFAULT_CRITERION, help_text="the key of the question this answers"
    )
    choice = models.CharField(max_length=16, choices=Choice.choices)
    submitted = models.CharField(
        max_length=16, help_text="what the annotator pressed: left, right, tie, both_bad, skip"
    )
    seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "criterion"], name="vote_one_per_assignment_criterion"),
            models.UniqueConstraint(
                fields=["annotator", "pair", "criterion"], name="vote_one_per_annotator_pair_criterion"
            ),
            models.CheckConstraint(condition=Q(choice__in=Choice.values), name="vote_choice_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator_id} on pair {self.pair_id} ({self.criterion}): {self.choice}"


class ReportReason(models.TextChoices):
    UNSAFE = "unsafe"
    OFFENSIVE = "offensive"
    SCREEN = "screen", "flagged by a safety screen"


class FlagState(models.TextChoices):
    """Where a withheld image stands: withdrawn at the first report, then an engineer's decision."""

    WITHDRAWN = "withdrawn", "withdrawn, awaiting review"
    CONFIRMED = "confirmed", "kept out (reviewed)"
    CLEARED = "cleared", "returned to its campaigns (reviewed)"


WITHHELD_STATES = (FlagState.WITHDRAWN, FlagState.CONFIRMED)


class ImageFlag(models.Model):
    """An image withheld from annotators and training: one row per image, however many reports it has.

    While ``withdrawn`` or ``confirmed`` every pair that shows it is ``Pair.withdrawn``; an engineer who clears it
    returns those pairs (unless their other image is withheld too). A new report after a clearance withdraws it again.
    """

    image = models.OneToOneField(
        "generators.GeneratedImage", on_delete=models.PROTECT, related_name="+", help_text="the withheld image"
    )
    state = models.CharField(max_length=16, choices=FlagState.choices, default=FlagState.WITHDRAWN)
    created_at = models.DateTimeField(auto_now_add=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=Q(state__in=FlagState.values), name="image_flag_state_valid")]

    def __str__(self) -> str:
        return f"image {self.image_id} ({self.state})"


class ImageReport(models.Model):
    """Why an image was withheld: an annotator's report from the rating page, or a safety screen's verdict."""

    flag = models.ForeignKey(ImageFlag, on_delete=models.CASCADE, related_name="reports")
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="image_reports"
    )
    screen = models.CharField(max_length=100, blank=True, default="", help_text="the safety screen that flagged it")
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=16, choices=ReportReason.choices)
    note = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["flag", "reporter"], condition=Q(reporter__isnull=False), name="image_report_one_per_reporter"
            ),
            models.UniqueConstraint(
                fields=["flag", "screen"], condition=~Q(screen=""), name="image_report_one_per_screen"
            ),
            models.CheckConstraint(
                condition=(Q(reporter__isnull=False) & Q(screen="")) | (Q(reporter__isnull=True) & ~Q(screen="")),
                name="image_report_by_person_or_screen",
            ),
            models.CheckConstraint(condition=Q(reason__in=ReportReason.values), name="image_report_reason_valid"),
        ]

    def __str__(self) -> str:
        return f"report of image flag {self.flag_id} ({self.reason})"
