"""Reads of campaigns and their progress, and what an annotator may see."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet, Sum

from core.roles import Role, has_role
from feedback.models import Assignment, Campaign, CampaignStatus, Choice, Vote


def campaigns_for(user) -> QuerySet[Campaign]:
    """Engineers and reviewers see every campaign; an annotator sees the open ones assigned to them."""
    campaigns = Campaign.objects.select_related("prompt_set")
    if has_role(user, Role.ENGINEER, Role.REVIEWER):
        return campaigns
    if has_role(user, Role.ANNOTATOR):
        return campaigns.filter(status=CampaignStatus.OPEN, annotators=user)
    return campaigns.none()


def campaign_progress(campaign: Campaign, user) -> dict:
    pairs = campaign.pairs.filter(is_gold=False).aggregate(n=Count("id"), votes=Sum("valid_votes"))
    mine = Vote.objects.filter(pair__campaign=campaign, annotator=user).exclude(choice=Choice.SKIP).count()
    return {
        "pairs": pairs["n"] or 0,
        "votes_wanted": (pairs["n"] or 0) * campaign.votes_per_pair,
        "valid_votes": pairs["votes"] or 0,
        "my_votes": mine,
    }


def annotator_may_see_image(user, image_id: int) -> bool:
    """An annotator may fetch an image only while it is part of a pair assigned to them."""
    return (
        Assignment.objects.filter(annotator=user)
        .filter(Q(pair__image_a_id=image_id) | Q(pair__image_b_id=image_id))
        .exists()
    )
