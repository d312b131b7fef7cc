"""The hand-out policy: which pair an annotator rates next. The whole policy lives here.

For an annotator in an open campaign they may annotate:

1. A live lease they already hold is returned again (reloading the page does not burn a pair); the
   page may hold a second one, the pair after the one on screen, so its images are preloaded.
2. Otherwise a pair is leased that
   - they have never been assigned (an annotator sees a pair at most once),
   - still needs votes: ``valid_votes + live leases of others < k`` (so the campaign never overshoots k),
   - is not being handed to someone else at this instant: rows are locked with
     ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent annotators take different pairs
     instead of queueing on the same row; SQLite serialises write transactions, which is correct but slower.
     Once a candidate's row lock is held its votes and leases are counted again in a new statement,
     because the candidate query's snapshot can predate a lease another annotator committed since.
   Among those, pairs closest to completion go first (finish pairs rather than spread votes thinly),
   then the oldest. With probability ``gold_rate`` a gold pair the annotator has not seen is offered
   instead (gold pairs have no k: everybody may get them).
3. Leases expire after ``campaign.lease_seconds``; an expired lease no longer counts, so its pair
   returns to the pool (for other annotators).
4. Which image is shown on the left is drawn at random per assignment and recorded (``a_on_left``).

"Nothing left" (None, the API's 204) means nothing for this annotator *now*: a pair that another
annotator is leasing at this instant, or one whose votes are all leased, can come back when a lease
lapses or ends in a skip. Clients poll again after a while; the campaign is complete when every
regular pair has k valid votes.
"""

from __future__ import annotations

import random
from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from feedback.models import Assignment, AssignmentStatus, Campaign, Pair


def _is_live(now) -> Q:
    """A lease that still holds at ``now``."""
    return Q(status=AssignmentStatus.LEASED, expires_at__gt=now)


def _live_leases(now, pair=None) -> Subquery:
    """Live leases of the pair (``pair`` given) or of the outer query's pair (a correlated count)."""
    leases = (
        Assignment.objects.filter(_is_live(now), pair=OuterRef("pk") if pair is None else pair)
        .values("pair")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(leases, output_field=IntegerField()), Value(0))


def _lock_first(pairs):
    if connection.features.has_select_for_update_skip_locked:
        pairs = pairs.select_for_update(skip_locked=True, of=("self",))
    return pairs.annotate(prompt_text=F("image_a__prompt__text")).first()


MAX_CANDIDATES = 20


def _has_room(pair: Pair, campaign: Campaign, now) -> bool:
    """Re-count, in a new statement, the pair's votes and live leases once its row lock is held.

    Every leaser locks the pair row first, so nobody else is leasing this pair now, and a new statement
    sees every lease committed before the lock was granted (the candidate query's snapshot may not).
    """
    votes, leases = (
        Pair.objects.filter(pk=pair.pk).annotate(leases=_live_leases(now, pair.pk)).values_list("valid_votes", "leases")
    ).get()
    return votes + leases < campaign.votes_per_pair


def _lock_first_with_room(candidates, campaign: Campaign, now) -> Pair | None:
    tried: list[int] = []
    for _ in range(MAX_CANDIDATES):
        pair = _lock_first(candidates.exclude(pk__in=tried))
        if pair is None or _has_room(pair, campaign, now):
            return pair
        tried.append(pair.pk)
    return None


def _with_pair_and_prompt(assignments):
    return assignments.select_related("pair").annotate(prompt_text=F("pair__image_a__prompt__text"))


def next_assignment(
    *, annotator, campaign: Campaign, after: int | None = None, rng: random.Random | None = None
) -> Assignment | None:
    """Lease the next pair for ``annotator`` (see the module docstring), or None when nothing is left.

    ``after`` is the assignment the annotator is looking at now: the page asks for the pair after it
    so that it can preload the next images. An annotator holds at most two live leases per campaign.
    The returned assignment carries its ``pair`` and the pair's ``prompt_text``.
    """
    rng = rng or random.SystemRandom()
    now = timezone.now()
    try:
        with transaction.atomic():
            live = _with_pair_and_prompt(
                Assignment.objects.filter(_is_live(now), annotator=annotator, pair__campaign=campaign)
            ).order_by("id")
            reusable = live.exclude(pk=after).first() if after else live.first()
            if reusable is not None:
                return reusable
            pair = _lease_candidate(annotator, campaign, now, rng)
            if pair is None:
                return None
            assignment = Assignment.objects.create(
                pair=pair,
                annotator=annotator,
                a_on_left=rng.random() < 0.5,
                expires_at=now + timedelta(seconds=campaign.lease_seconds),
            )
            assignment.prompt_text = pair.prompt_text
            return assignment
    except IntegrityError:  # this annotator's other request leased the same pair a moment ago
        return _with_pair_and_prompt(Assignment.objects.filter(annotator=annotator, pair=pair)).first()


def _lease_candidate(annotator, campaign: Campaign, now, rng: random.Random) -> Pair | None:
    """Lock the pair to lease (a gold pair at ``gold_rate``, else the regular one closest to done)."""
    unseen = Pair.objects.filter(campaign=campaign).exclude(assignments__annotator=annotator)
    if campaign.gold_rate and rng.random() < campaign.gold_rate:
        gold = _lock_first(unseen.filter(is_gold=True).order_by("id"))
        if gold is not None:
            return gold
    regular = (
        unseen.filter(is_gold=False, valid_votes__lt=campaign.votes_per_pair)  # lets the index skip finished pairs
        .alias(live_leases=_live_leases(now))
        .filter(valid_votes__lt=Value(campaign.votes_per_pair) - F("live_leases"))
        .order_by("-valid_votes", "id")
    )
    return _lock_first_with_room(regular, campaign, now)
