"""Reads of the rewards app."""

from __future__ import annotations

from django.db.models import QuerySet

from rewards.curve_advice import stop_advice
from rewards.models import CampaignRefit, PreferenceDataset, RewardModel


def datasets() -> QuerySet[PreferenceDataset]:
    return PreferenceDataset.objects.prefetch_related("campaigns").select_related("created_by")


def reward_models() -> QuerySet[RewardModel]:
    return RewardModel.objects.select_related("dataset", "training_run", "artifact", "created_by")


def campaign_learning_curve(campaign) -> dict:
    """The campaign's learning curve: the latest finished refit's points (held-out decisive accuracy against the
    number of votes, on one prompt-disjoint split) with its zero-shot accuracy and human ceiling, the last point
    of every earlier refit (``history``), and a sentence on whether more votes are worth collecting."""
    refits = list(
        CampaignRefit.objects.filter(campaign=campaign, used_votes__isnull=False)
        .prefetch_related("points")
        .order_by("created_at", "id")
    )
    history = []
    for refit in refits:
        measured = [p for p in refit.points.all() if p.accuracy is not None]
        if measured:
            history.append({"run": refit.run_id, "votes": measured[-1].votes, "accuracy": measured[-1].accuracy})
    latest = refits[-1] if refits else None
    body = {
        "campaign": campaign.pk,
        "selection": campaign.selection,
        "refit_every": campaign.refit_every,
        "refit_running": CampaignRefit.objects.filter(campaign=campaign, active=True).exists(),
        "latest": None,
        "history": history,
        "advice": "No refit yet: the first comes after "
        f"{campaign.refit_every} valid votes (at once for an uncertainty campaign).",
    }
    if latest is None:
        return body
    points = [{"votes": p.votes, "train_votes": p.train_votes, "accuracy": p.accuracy} for p in latest.points.all()]
    body["latest"] = {
        "run": latest.run_id,
        "created_at": latest.created_at,
        "votes": latest.used_votes,
        "test_votes": latest.test_votes,
        "zero_shot_accuracy": latest.zero_shot_accuracy,
        "human_ceiling": latest.human_ceiling,
        "ceiling_pairs": latest.ceiling_pairs,
        "priorities": latest.priorities,
        "priority_source": latest.priority_source,
        "points": points,
    }
    body["advice"] = stop_advice(
        [(p["votes"], p["accuracy"]) for p in points], latest.human_ceiling, latest.zero_shot_accuracy
    )
    return body
