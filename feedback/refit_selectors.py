"""Reads for a campaign's refit job (``rewards.refit``): its votes and the pairs still needing votes, as plain rows.

Only non-gold pairs; votes are those of the campaign's first question (the criterion its priorities follow), skips
left out. Image ids cross the boundary; the job reads the files through ``generators.selectors``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, Sum

from feedback.models import Campaign, CampaignStatus, Choice, Pair, Purpose, Vote


@dataclass(frozen=True)
class RefitVote:
    """One vote against the pair's images (``choice``: a, b, tie or both_bad)."""

    vote: int
    pair: int
    prompt: str
    image_a: int
    image_b: int
    choice: str
    annotator: int


@dataclass(frozen=True)
class OpenPair:
    """A pair that still needs votes."""

    pair: int
    prompt: str
    image_a: int
    image_b: int


def first_criterion(campaign: Campaign) -> str | None:
    """The key of the campaign's first question (None for campaigns stored before questions existed)."""
    questions = getattr(campaign, "questions", None) or []
    return questions[0]["key"] if questions else None


def refit_votes(campaign: Campaign) -> list[RefitVote]:
    """The campaign's votes on its regular pairs (not withdrawn) for its first question, in the order they came (skips
    out)."""
    votes = Vote.objects.filter(pair__campaign=campaign, pair__is_gold=False, pair__withdrawn=False).exclude(
        choice=Choice.SKIP
    )
    criterion = first_criterion(campaign)
    if criterion is not None:
        votes = votes.filter(criterion=criterion)
    rows = votes.order_by("id").values_list(
        "id", "pair_id", "pair__image_a__prompt__text", "pair__image_a_id", "pair__image_b_id", "choice", "annotator_id"
    )
    return [RefitVote(*row) for row in rows]


def open_pairs(campaign: Campaign) -> list[OpenPair]:
    """The campaign's regular pairs with fewer than k valid votes, by id."""
    pairs = Pair.objects.filter(
        campaign=campaign, is_gold=False, withdrawn=False, valid_votes__lt=campaign.votes_per_pair
    )
    rows = pairs.order_by("id").values_list("id", "image_a__prompt__text", "image_a_id", "image_b_id")
    return [OpenPair(*row) for row in rows]


@dataclass(frozen=True)
class RefitDue:
    """What the refit trigger needs to know of an open ``collect`` campaign."""

    campaign: int
    valid_votes: int
    refit_every: int
    selection: str


def open_collect_campaigns() -> list[RefitDue]:
    """Every open ``collect`` campaign with the valid votes on its regular pairs so far (one query)."""
    rows = (
        Campaign.objects.filter(status=CampaignStatus.OPEN, purpose=Purpose.COLLECT)
        .annotate(valid=Sum("pairs__valid_votes", filter=Q(pairs__is_gold=False), default=0))
        .order_by("pk")
        .values_list("pk", "valid", "refit_every", "selection")
    )
    return [RefitDue(*row) for row in rows]
