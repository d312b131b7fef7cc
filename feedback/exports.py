"""Training rows from campaigns' votes, in the Pick-a-Pic schema (one row per non-skip vote).

Gold pairs, withdrawn pairs (an image of them reported or screened out: ``feedback/safety.py``) and skips are left
out; so are the votes of annotators flagged by gold accuracy, unless
``include_flagged``, and those of the users named in ``exclude_users`` (e.g. a deactivated annotator's: their votes
stay in the database and are left out only here). A tie is labelled 0.5/0.5 and so is ``both_bad`` (with
``both_bad`` set). Each row carries its ``criterion`` (the question it answers): all of them, or only one with
``criterion``.
"""

from __future__ import annotations

from collections.abc import Iterable

from feedback import selectors
from feedback.models import Campaign, Choice, Vote
from feedback.pickapic import PickapicRow


def _read(image) -> bytes:
    with image.file.open("rb") as handle:
        return handle.read()


def excluded_annotators(
    campaigns: Iterable[Campaign],
    *,
    include_flagged: bool,
    gold_threshold: float,
    min_gold: int,
    exclude_users: Iterable[str] = (),
) -> dict[int, set[str]]:
    """Per campaign id, the usernames whose votes are left out (flagged by gold accuracy, and ``exclude_users``)."""
    named = set(exclude_users)
    if include_flagged:
        return {campaign.pk: set(named) for campaign in campaigns}
    return {
        campaign.pk: selectors.flagged_annotators(campaign, threshold=gold_threshold, min_gold=min_gold) | named
        for campaign in campaigns
    }


def pickapic_rows(
    campaigns: Iterable[Campaign],
    *,
    include_flagged: bool = False,
    gold_threshold: float = 0.7,
    min_gold: int = 5,
    criterion: str | None = None,
    exclude_users: Iterable[str] = (),
) -> tuple[list[PickapicRow], dict[int, set[str]]]:
    """The campaigns' training rows (ordered by vote id) and the annotators left out per campaign; with
    ``criterion``, only the votes on that question; the votes of the usernames in ``exclude_users`` are left out
    (and listed among the excluded) whatever their quality."""
    campaigns = list(campaigns)
    excluded = excluded_annotators(
        campaigns,
        include_flagged=include_flagged,
        gold_threshold=gold_threshold,
        min_gold=min_gold,
        exclude_users=exclude_users,
    )
    rows: list[PickapicRow] = []
    images: dict[int, bytes] = {}
    for campaign in campaigns:
        votes = Vote.objects.filter(pair__campaign=campaign, pair__is_gold=False, pair__withdrawn=False)
        if criterion is not None:
            votes = votes.filter(criterion=criterion)
        votes = (
            votes.exclude(choice=Choice.SKIP)
            .exclude(annotator__username__in=excluded[campaign.pk])
            .select_related(
                "pair__image_a__prompt",
                "pair__image_a__model_version__base_model",
                "pair__image_b__model_version__base_model",
            )
            .order_by("id")
        )
        for vote in votes:
            a, b = vote.pair.image_a, vote.pair.image_b
            for image in (a, b):
                if image.pk not in images:
                    images[image.pk] = _read(image)
            rows.append(
                PickapicRow.from_choice(
                    vote.choice,
                    caption=a.prompt.text,
                    jpg_0=images[a.pk],
                    jpg_1=images[b.pk],
                    image_0_uid=a.sha256,
                    image_1_uid=b.sha256,
                    model_0=str(a.model_version),
                    model_1=str(b.model_version),
                    user_id=vote.annotator_id,
                    ranking_id=vote.pk,
                    created_at=vote.created_at,
                    criterion=vote.criterion,
                )
            )
    return rows, excluded
