"""Every write of the feedback app: campaigns, their pairs, votes."""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from core import services as runs
from core.api_errors import Conflict
from core.run_states import RunState
from core.uniqueness import create_named
from feedback.models import Assignment, AssignmentStatus, Campaign, CampaignStatus, Choice, Pair, Purpose, Vote
from generators.models import GeneratedImage, ModelVersion, PromptSet

log = logging.getLogger(__name__)

SUBMITTED_CHOICES = ("left", "right", "tie", "both_bad", "skip")


def campaign_create(
    *,
    name: str,
    purpose: str,
    prompt_set: PromptSet,
    model_versions: Iterable[ModelVersion],
    annotators: Iterable = (),
    votes_per_pair: int = 3,
    gold_rate: float = 0.0,
    lease_seconds: int = 300,
    images_per_prompt: int | None = None,
    created_by=None,
    open_now: bool = True,
) -> Campaign:
    """Create a campaign and, with ``open_now``, open it (generating its missing images first)."""
    versions = list(model_versions)
    if images_per_prompt is None:
        images_per_prompt = 2 if len(versions) == 1 else 1
    if len(versions) == 1 and images_per_prompt < 2:
        raise ValidationError(
            {"images_per_prompt": ["With one model version, pairs are two seeds of it: use at least 2."]}
        )
    if purpose == Purpose.ARENA and len(versions) < 2:
        raise ValidationError({"model_versions": ["An arena campaign compares at least two model versions."]})
    if not versions:
        raise ValidationError({"model_versions": ["Choose at least one model version."]})
    return create_named(
        Campaign,
        name,
        "campaign",
        lambda: _campaign_insert(
            name=name,
            purpose=purpose,
            prompt_set=prompt_set,
            versions=versions,
            annotators=annotators,
            votes_per_pair=votes_per_pair,
            gold_rate=gold_rate,
            lease_seconds=lease_seconds,
            images_per_prompt=images_per_prompt,
            created_by=created_by,
            open_now=open_now,
        ),
    )


def _campaign_insert(*, versions, annotators, open_now: bool, **fields) -> Campaign:
    campaign = Campaign.objects.create(**fields)
    campaign.model_versions.set(versions)
    campaign.annotators.set(list(annotators))
    if open_now:
        campaign_open(campaign=campaign, started_by=fields.get("created_by"))
    return campaign


def _images_of(campaign: Campaign):
    return GeneratedImage.objects.filter(
        model_version__campaigns=campaign,
        prompt__prompt_sets=campaign.prompt_set,
        seed__lt=campaign.images_per_prompt,
    )


def _pairs_for(campaign: Campaign) -> list[tuple[int, int]]:
    """Image pairs: across versions for the same prompt and seed, or two seeds of one version."""
    versions = list(campaign.model_versions.order_by("id"))
    images = _images_of(campaign).order_by("prompt_id", "seed", "model_version_id", "id")
    by_prompt_seed: dict[tuple[int, int], dict[int, int]] = defaultdict(dict)
    for image in images.values("id", "prompt_id", "seed", "model_version_id"):
        by_prompt_seed[(image["prompt_id"], image["seed"])].setdefault(image["model_version_id"], image["id"])
    if len(versions) == 1:
        by_prompt: dict[int, list[int]] = defaultdict(list)
        for (prompt_id, _seed), per_version in sorted(by_prompt_seed.items()):
            by_prompt[prompt_id].append(per_version[versions[0].pk])
        return [(ids[i], ids[i + 1]) for ids in by_prompt.values() for i in range(0, len(ids) - 1, 2)]
    return [
        (per_version[a.pk], per_version[b.pk])
        for per_version in by_prompt_seed.values()
        for a, b in itertools.combinations(versions, 2)
        if a.pk in per_version and b.pk in per_version
    ]


def _missing_image_count(campaign: Campaign) -> int:
    """How many (version, prompt, seed < images_per_prompt) images the campaign lacks."""
    versions = campaign.model_versions.count()
    prompts = campaign.prompt_set.prompts.count()
    have = _images_of(campaign).values("model_version_id", "prompt_id", "seed").distinct().count()
    return versions * prompts * campaign.images_per_prompt - have


def campaign_open(*, campaign: Campaign, started_by=None) -> Campaign:
    """Open the campaign for annotators, building its pairs first.

    When images are missing, a ``generate`` run for them is started instead and the campaign waits
    in ``preparing``; it opens when that run succeeds (see :func:`campaign_preparation_finished`).
    """
    if not campaign.pairs.exists():
        missing = _missing_image_count(campaign)
        if missing:
            return _campaign_prepare(campaign, missing, started_by)
        pairs = _pairs_for(campaign)
        if not pairs:
            raise ValidationError({"model_versions": ["These versions and prompts give no pair of images to compare."]})
        Pair.objects.bulk_create([Pair(campaign=campaign, image_a_id=a, image_b_id=b) for a, b in pairs])
    campaign.status = CampaignStatus.OPEN
    campaign.save(update_fields=["status"])
    return campaign


def _campaign_prepare(campaign: Campaign, missing: int, started_by) -> Campaign:
    run = runs.run_create(
        kind="generate",
        config={
            "model_versions": list(campaign.model_versions.order_by("id").values_list("pk", flat=True)),
            "prompt_set": campaign.prompt_set_id,
            "images_per_prompt": campaign.images_per_prompt,
            "seed": 0,
        },
        created_by=started_by,
    )
    log.info("campaign %s lacks %d images: generation run %s started", campaign.pk, missing, run.pk)
    campaign.status, campaign.preparing_run = CampaignStatus.PREPARING, run
    campaign.save(update_fields=["status", "preparing_run"])
    return campaign


def campaign_preparation_finished(*, run) -> list[Campaign]:
    """Open the campaigns that waited for ``run``'s images; back to draft if it did not succeed."""
    campaigns = []
    for campaign in Campaign.objects.filter(preparing_run=run, status=CampaignStatus.PREPARING):
        with transaction.atomic():
            if run.state == RunState.SUCCEEDED and not _missing_image_count(campaign):
                campaign_open(campaign=campaign)
            else:
                log.warning("campaign %s stays a draft: its generation run %s ended %s", campaign.pk, run.pk, run.state)
                campaign.status = CampaignStatus.DRAFT
                campaign.save(update_fields=["status"])
        campaigns.append(campaign)
    return campaigns


def campaign_from_pairs(
    *, source: Campaign, pairs: Iterable[Pair], name: str, votes_per_pair: int = 3, created_by=None
) -> Campaign:
    """A new open ``collect`` campaign of exactly these image pairs (e.g. a reward model's mistakes), for the
    source campaign's prompt set, versions and annotators."""
    image_pairs = [(pair.image_a_id, pair.image_b_id) for pair in pairs]
    if not image_pairs:
        raise ValidationError({"pairs": ["No pairs to put in a campaign."]})

    def create() -> Campaign:
        campaign = Campaign.objects.create(
            name=name,
            purpose=Purpose.COLLECT,
            prompt_set=source.prompt_set,
            votes_per_pair=votes_per_pair,
            lease_seconds=source.lease_seconds,
            images_per_prompt=source.images_per_prompt,
            created_by=created_by,
            status=CampaignStatus.OPEN,
        )
        campaign.model_versions.set(source.model_versions.all())
        campaign.annotators.set(source.annotators.all())
        Pair.objects.bulk_create([Pair(campaign=campaign, image_a_id=a, image_b_id=b) for a, b in image_pairs])
        return campaign

    return create_named(Campaign, name, "campaign", create)


def pair_mark_gold(*, pair: Pair, choice: str) -> Pair:
    if choice not in (Choice.A, Choice.B, Choice.TIE):
        raise ValidationError({"choice": ["A gold answer is a, b or tie."]})
    pair.is_gold, pair.gold_choice = True, choice
    pair.save(update_fields=["is_gold", "gold_choice"])
    return pair


def _to_image_choice(submitted: str, a_on_left: bool) -> str:
    if submitted == "left":
        return Choice.A if a_on_left else Choice.B
    if submitted == "right":
        return Choice.B if a_on_left else Choice.A
    return submitted


def vote_submit(*, annotator, assignment_id: int, submitted: str, seconds: float | None = None) -> tuple[Vote, bool]:
    """Record the annotator's vote on their assignment; returns (vote, created).

    The same vote sent again returns the stored one (created False); a different vote on the same
    assignment is a :class:`Conflict`. The vote is stored against the images (``a``/``b``), not the
    sides. Skips never count toward the pair's k. A vote on a lease that expired is still taken while
    the pair needs votes; once others completed it, it is a Conflict.
    """
    if submitted not in SUBMITTED_CHOICES:
        raise ValidationError({"choice": [f"Choose one of {', '.join(SUBMITTED_CHOICES)}."]})
    try:
        with transaction.atomic():
            return _record_vote(annotator, assignment_id, submitted, seconds)
    except IntegrityError as exc:  # pragma: no cover - guarded by the checks under the row locks
        raise Conflict("You already voted on this pair.") from exc


def _record_vote(annotator, assignment_id: int, submitted: str, seconds: float | None) -> tuple[Vote, bool]:
    # Lock the assignment and its pair (not the campaign: that would serialise every vote of a campaign).
    assignment = (
        Assignment.objects.select_for_update(of=("self", "pair"))
        .select_related("pair__campaign")
        .annotate(existing_vote=F("vote__id"))
        .filter(pk=assignment_id, annotator=annotator)
        .first()
    )
    if assignment is None:
        raise Assignment.DoesNotExist(f"No assignment {assignment_id} of yours.")
    choice = _to_image_choice(submitted, assignment.a_on_left)
    if assignment.existing_vote is not None:
        existing = Vote.objects.get(pk=assignment.existing_vote)
        if existing.choice == choice:
            return existing, False
        raise Conflict(f"You already voted {existing.submitted!r} on this pair; a different vote is not accepted.")
    pair = assignment.pair
    if assignment.expires_at < timezone.now() and pair.valid_votes >= pair.campaign.votes_per_pair and not pair.is_gold:
        raise Conflict("Your lease on this pair expired and the pair already has all its votes; fetch the next one.")
    vote = Vote.objects.create(
        assignment=assignment, pair=pair, annotator=annotator, choice=choice, submitted=submitted, seconds=seconds
    )
    Assignment.objects.filter(pk=assignment.pk).update(status=AssignmentStatus.VOTED)
    if choice != Choice.SKIP:
        Pair.objects.filter(pk=pair.pk).update(valid_votes=F("valid_votes") + 1)
    return vote, True
