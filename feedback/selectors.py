"""Reads of campaigns and their progress, and what an annotator may see."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Count, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from core import hot_sql
from core.roles import Role, has_role
from feedback import agreement, ratings
from feedback.criteria import criteria_of
from feedback.models import Assignment, Campaign, CampaignStatus, Choice, Pair, Purpose, Vote


def criterion_of(campaign: Campaign, criterion: str | None = None) -> str:
    """``criterion`` if the campaign asks that question (a ValidationError on ``criterion`` if not); None: its first
    question, the one quality, agreement, gold accuracy and the arena leaderboard read by default."""
    keys = criteria_of(campaign.questions)
    if criterion is None:
        return keys[0]
    if criterion not in keys:
        raise ValidationError({"criterion": [f"Campaign {campaign.pk} asks {', '.join(keys)}, not {criterion!r}."]})
    return criterion


def campaigns_for(user) -> QuerySet[Campaign]:
    """Engineers and reviewers see every campaign; an annotator sees the open ones assigned to them."""
    campaigns = Campaign.objects.select_related("prompt_set")
    if has_role(user, Role.ENGINEER, Role.REVIEWER):
        return campaigns
    if has_role(user, Role.ANNOTATOR):
        return campaigns.filter(status=CampaignStatus.OPEN, annotators=user)
    return campaigns.none()


def assigned_not_open(user) -> QuerySet[Campaign]:
    """Campaigns ``user`` is assigned to that are not open (draft, preparing or closed), newest first."""
    return Campaign.objects.filter(annotators=user).exclude(status=CampaignStatus.OPEN).order_by("-pk")


def campaigns_to_rate(user) -> QuerySet[Campaign]:
    """Open campaigns the user is assigned to rate (annotators, and reviewers in arenas)."""
    return Campaign.objects.filter(status=CampaignStatus.OPEN, annotators=user)


_CAMPAIGN_COLUMNS = tuple(field.attname for field in Campaign._meta.concrete_fields)


def _campaign_to_rate_sql(where: str) -> str:
    annotators = Campaign._meta.get_field("annotators")
    through = annotators.remote_field.through._meta.db_table
    columns = ", ".join(f"c.{name}" for name in _CAMPAIGN_COLUMNS)
    return (
        f"SELECT {columns} FROM {Campaign._meta.db_table} c JOIN {through} r "  # noqa: S608 - names from the models
        f"ON r.{annotators.m2m_column_name()} = c.id AND r.{annotators.m2m_reverse_name()} = %s "
        f"WHERE c.status = '{CampaignStatus.OPEN.value}' AND {where}"
    )


_CAMPAIGN_TO_RATE_SQL = _campaign_to_rate_sql("c.id = %s")
_CAMPAIGN_OF_PAIR_TO_RATE_SQL = _campaign_to_rate_sql(
    f"c.id = (SELECT campaign_id FROM {Pair._meta.db_table} WHERE id = %s)"  # noqa: S608
)


def campaign_to_rate(user, *, pk: int | None = None, pair: int | None = None) -> Campaign | None:
    """The open campaign ``pk`` (or the one ``pair`` belongs to) when ``user`` may rate it, else None.

    One hand-written query: it runs on every request of the annotators' hot path.
    """
    sql, key = (_CAMPAIGN_TO_RATE_SQL, pk) if pk is not None else (_CAMPAIGN_OF_PAIR_TO_RATE_SQL, pair)
    with hot_sql.cursor() as cursor:
        cursor.execute(sql, [user.pk, key])
        row = cursor.fetchone()
    return None if row is None else Campaign.from_db(connection.alias, _CAMPAIGN_COLUMNS, row)


def with_progress(campaigns: QuerySet[Campaign], user) -> QuerySet[Campaign]:
    """``campaigns`` with their progress for ``user`` computed in the same query (for lists: no query per row)."""
    regular = Pair.objects.filter(campaign=OuterRef("pk"), is_gold=False, withdrawn=False).order_by().values("campaign")
    mine = (
        Vote.objects.filter(pair__campaign=OuterRef("pk"), annotator=user)
        .exclude(choice=Choice.SKIP)
        .order_by()
        .values("pair__campaign")
    )
    return campaigns.annotate(
        progress_pairs=Coalesce(Subquery(regular.annotate(n=Count("id")).values("n")), 0),
        progress_valid_votes=Coalesce(Subquery(regular.annotate(n=Sum("valid_votes")).values("n")), 0),
        # pairs, not rows: a submission is one row per question
        progress_my_votes=Coalesce(Subquery(mine.annotate(n=Count("pair_id", distinct=True)).values("n")), 0),
    )


def campaign_progress(campaign: Campaign, user) -> dict:
    """Pairs, votes wanted and given, and ``user``'s votes (read from :func:`with_progress`'s columns if there)."""
    if hasattr(campaign, "progress_pairs"):
        pairs, valid, mine = campaign.progress_pairs, campaign.progress_valid_votes, campaign.progress_my_votes
    else:
        totals = campaign.pairs.filter(is_gold=False, withdrawn=False).aggregate(
            n=Count("id"), votes=Sum("valid_votes")
        )
        pairs, valid = totals["n"] or 0, totals["votes"] or 0
        mine = (
            Vote.objects.filter(pair__campaign=campaign, annotator=user, criterion=criterion_of(campaign))
            .exclude(choice=Choice.SKIP)
            .count()
        )
    return {"pairs": pairs, "votes_wanted": pairs * campaign.votes_per_pair, "valid_votes": valid, "my_votes": mine}


def vote_records(campaign: Campaign, criterion: str | None = None) -> list[dict]:
    """The campaign's votes on one question (default: the first) as plain records for ``feedback.agreement``
    (choices against images)."""
    rows = Vote.objects.filter(pair__campaign=campaign, criterion=criterion_of(campaign, criterion)).values(
        "annotator__username", "pair_id", "choice", "assignment__a_on_left", "seconds"
    )
    return [
        {
            "annotator": row["annotator__username"],
            "pair": row["pair_id"],
            "choice": row["choice"],
            "first_side": "left" if row["assignment__a_on_left"] else "right",
            "seconds": row["seconds"],
        }
        for row in rows.order_by("id")
    ]


def gold_answers(campaign: Campaign) -> dict[int, str]:
    return dict(campaign.pairs.filter(is_gold=True).values_list("id", "gold_choice"))


def campaign_quality(
    campaign: Campaign, *, threshold: float = 0.7, min_gold: int = 5, criterion: str | None = None
) -> dict:
    """Per-annotator quality (gold accuracy, majority agreement, position bias, speed, flag) and
    Krippendorff's alpha over the pairs with overlapping votes, on one question (default: the first; gold answers
    are answers to it).
    """
    criterion = criterion_of(campaign, criterion)
    records = vote_records(campaign, criterion)
    return {
        "criterion": criterion,
        "annotators": agreement.annotator_quality_table(
            records, gold_answers(campaign), threshold=threshold, min_gold=min_gold
        ),
        "krippendorff_alpha": agreement.krippendorff_alpha(agreement.units_from_votes(records)),
        "votes": len(records),
        "gold_threshold": threshold,
    }


def flagged_annotators(campaign: Campaign, *, threshold: float = 0.7, min_gold: int = 5) -> set[str]:
    """Annotators whose gold accuracy is below ``threshold`` (after ``min_gold`` gold votes) on the campaign's first
    question (a gold pair's answer is an answer to it)."""
    accuracy = agreement.gold_accuracy(vote_records(campaign), gold_answers(campaign))
    return set(agreement.flag_annotators(accuracy, threshold=threshold, min_gold=min_gold))


def votes_over_time(campaign: Campaign, *, max_points: int = 120) -> list[dict]:
    """Cumulative votes of the campaign over time, at most ``max_points`` points (one per time bin).

    Each point: ``t`` (end of the bin, ISO 8601), ``votes`` (every vote so far, skips included) and
    ``valid_votes`` (non-skip votes so far, what counts toward k).
    """
    submissions = Vote.objects.filter(pair__campaign=campaign, criterion=criterion_of(campaign))  # one row each
    rows = list(submissions.order_by("created_at").values_list("created_at", "choice"))
    if not rows:
        return []
    first, last = rows[0][0], rows[-1][0]
    width = max((last - first) / max_points, timedelta(seconds=1))
    points: list[dict] = []
    votes = valid = 0
    bin_end = first + width
    for created_at, choice in rows:
        while created_at > bin_end:
            points.append({"t": bin_end.isoformat(), "votes": votes, "valid_votes": valid})
            bin_end += width
        votes += 1
        valid += choice != Choice.SKIP
    points.append({"t": bin_end.isoformat(), "votes": votes, "valid_votes": valid})
    return points


def arena_votes(campaign: Campaign, criterion: str | None = None) -> list[tuple[int, int, str]]:
    """The campaign's votes on one question (default: the first) as (version id of image a, version id of image b,
    choice); skips included (the ratings ignore them), withdrawn pairs' votes not (an image of them was reported
    or screened out: the pair left the campaign)."""
    votes = Vote.objects.filter(
        pair__campaign=campaign, pair__is_gold=False, pair__withdrawn=False, criterion=criterion_of(campaign, criterion)
    )
    rows = votes.values_list("pair__image_a__model_version_id", "pair__image_b__model_version_id", "choice")
    return list(rows.order_by("id"))


def campaign_leaderboard(
    campaign: Campaign,
    *,
    both_bad: str = "tie",
    n_resamples: int = 1000,
    seed: int = 0,
    criterion: str | None = None,
) -> dict:
    """Bradley–Terry ratings of the campaign's model versions with bootstrap intervals (see ``feedback.ratings``).

    Versions are keyed by id (``model``, ``model_a``, ``model_b``, ``winner``); ``name`` fields (``base/version``)
    are for display. Every pair carries a :class:`feedback.ratings.Verdict` and ``enough_votes``; ``versions``
    lists the campaign's versions (id and name), voted on or not. Ranked on one question (``criterion``, default
    the campaign's first).
    """
    from generators.models import ModelVersion

    versions = ModelVersion.objects.filter(campaigns=campaign).select_related("base_model").order_by("pk")
    names = {v.pk: str(v) for v in versions}
    criterion = criterion_of(campaign, criterion)
    board = {
        "campaign": campaign.pk,
        "purpose": campaign.purpose,
        "criterion": criterion,
        "versions": [{"id": pk, "name": name} for pk, name in names.items()],
    }
    votes = arena_votes(campaign, criterion)
    if not any(choice != Choice.SKIP for _, _, choice in votes):
        return {**board, "models": [], "pairs": [], "matrix": None, "votes": {"used": 0}, "connected": False}
    result = ratings.leaderboard(votes, n_resamples=n_resamples, seed=seed, both_bad=both_bad, names=names)
    return {**board, **result}


def arena_sides_revealed(vote: Vote) -> dict[str, str] | None:
    """After an arena vote: which model version was on the left and on the right (None for other campaigns)."""
    pair = Pair.objects.select_related(
        "campaign", "image_a__model_version__base_model", "image_b__model_version__base_model"
    ).get(pk=vote.pair_id)
    if pair.campaign.purpose != Purpose.ARENA:
        return None
    a, b = str(pair.image_a.model_version), str(pair.image_b.model_version)
    a_on_left = Assignment.objects.values_list("a_on_left", flat=True).get(pk=vote.assignment_id)
    return {"left": a, "right": b} if a_on_left else {"left": b, "right": a}


def annotator_activity(user_ids) -> dict[int, dict]:
    """Per user id (every id given): ``campaigns`` (assigned), ``votes`` (submissions, all campaigns: a submission
    answering several questions counts once), ``last_vote`` (time or None) and ``gold_correct`` / ``gold_total`` /
    ``gold_accuracy`` over their non-skip votes on gold pairs (each campaign's first question; None without any)."""
    user_ids = list(user_ids)
    activity = {
        pk: {"campaigns": 0, "votes": 0, "last_vote": None, "gold_correct": 0, "gold_total": 0, "gold_accuracy": None}
        for pk in user_ids
    }
    assigned = Campaign.annotators.through.objects.filter(user_id__in=user_ids)
    for pk, count in assigned.values("user_id").annotate(n=Count("id")).values_list("user_id", "n"):
        activity[pk]["campaigns"] = count
    votes = Vote.objects.filter(annotator_id__in=user_ids)
    rows = votes.values("annotator_id").annotate(n=Count("assignment_id", distinct=True), last=Max("created_at"))
    for row in rows:
        activity[row["annotator_id"]].update(votes=row["n"], last_vote=row["last"])
    gold_votes = votes.filter(pair__is_gold=True).exclude(choice=Choice.SKIP)
    first_question = {}
    for campaign_id, annotator_id, criterion, choice, gold in gold_votes.values_list(
        "pair__campaign_id", "annotator_id", "criterion", "choice", "pair__gold_choice"
    ):
        if campaign_id not in first_question:
            first_question[campaign_id] = criteria_of(Campaign.objects.get(pk=campaign_id).questions)[0]
        if criterion != first_question[campaign_id]:
            continue
        activity[annotator_id]["gold_total"] += 1
        activity[annotator_id]["gold_correct"] += choice == gold
    for row in activity.values():
        if row["gold_total"]:
            row["gold_accuracy"] = row["gold_correct"] / row["gold_total"]
    return activity


def annotator_campaigns(user) -> list[dict]:
    """Per campaign ``user`` is assigned to or voted in (newest first): the campaign, whether assigned, their row
    of :func:`campaign_quality` (None without votes on its first question) and their last vote's time."""
    voted = Vote.objects.filter(annotator=user).values("pair__campaign_id")
    campaigns = Campaign.objects.filter(Q(annotators=user) | Q(pk__in=voted)).distinct().order_by("-pk")
    assigned = set(user.campaigns.values_list("pk", flat=True))
    last_votes = dict(
        Vote.objects.filter(annotator=user)
        .values("pair__campaign_id")
        .annotate(last=Max("created_at"))
        .values_list("pair__campaign_id", "last")
    )
    rows = []
    for campaign in campaigns:
        quality = campaign_quality(campaign)
        mine = next((row for row in quality["annotators"] if row["annotator"] == user.username), None)
        rows.append(
            {
                "campaign": campaign,
                "assigned": campaign.pk in assigned,
                "quality": mine,
                "criterion": quality["criterion"],
                "last_vote": last_votes.get(campaign.pk),
            }
        )
    return rows
