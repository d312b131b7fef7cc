"""Why an annotator has (or has not) something to rate in a campaign, and when to come back. Reads only.

The hand-out (``feedback.handout``) answers "nothing left" without saying why; this module says it, for the
annotator's home page, the rating page and the campaign page:

- ``complete``: every regular pair has its k valid votes;
- ``can_rate``: pairs are waiting for this annotator (or a lease they hold is still live);
- ``waiting``: the pairs this annotator has not seen are all being rated by others right now; one comes back
  if its rater skips it or lets the lease lapse (``retry_at``: the earliest of those leases' expiry);
- ``done_for_you``: this annotator has seen every pair that still needs votes (an annotator rates a pair once,
  a skip included), so only other annotators can finish them (``stalled`` counts the pairs that no assigned
  annotator can take any more: the campaign stops short of complete until more annotators are added).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, F, Q
from django.utils import timezone

from feedback.models import Assignment, AssignmentStatus, Campaign, Pair

STATES = ("complete", "can_rate", "waiting", "done_for_you")


@dataclass(frozen=True)
class Outlook:
    """What one annotator can do in one campaign now."""

    state: str
    pairs_needing_votes: int  # regular pairs short of k valid votes
    open_to_you: int  # of those, pairs you have not seen with room for your vote now
    leased_by_others: int  # pairs you have not seen whose missing votes are all leased by others now
    seen_by_you: int  # pairs short of votes that you have rated or skipped (others must finish them)
    stalled: int  # pairs short of votes that every assigned annotator has seen already
    retry_at: datetime | None  # when the first of the others' leases lapses (state ``waiting``)
    message: str

    def to_dict(self) -> dict:
        data = dict(self.__dict__)
        data["retry_at"] = self.retry_at.isoformat() if self.retry_at else None
        return data


def rating_outlook(campaign: Campaign, user, now: datetime | None = None) -> Outlook:
    """The :class:`Outlook` of ``user`` in ``campaign`` at ``now``."""
    now = now or timezone.now()
    k = campaign.votes_per_pair
    live = Q(assignments__status=AssignmentStatus.LEASED, assignments__expires_at__gt=now)
    short = Pair.objects.filter(campaign=campaign, is_gold=False, withdrawn=False, valid_votes__lt=k)
    seen = Assignment.objects.filter(pair__campaign=campaign, annotator=user).values("pair_id")
    unseen = short.exclude(id__in=seen).annotate(live_leases=Count("assignments", filter=live))
    open_to_you = unseen.filter(valid_votes__lt=k - F("live_leases")).count()
    leased = unseen.filter(valid_votes__gte=k - F("live_leases"))
    holds_lease = Assignment.objects.filter(
        pair__campaign=campaign, annotator=user, status=AssignmentStatus.LEASED, expires_at__gt=now
    ).exists()
    stalled = stalled_pairs(campaign)
    retry_at = None
    counts = {
        "pairs_needing_votes": short.count(),
        "open_to_you": open_to_you,
        "leased_by_others": leased.count(),
        "seen_by_you": short.filter(id__in=seen).count(),
        "stalled": stalled,
    }
    if counts["pairs_needing_votes"] == 0:
        state = "complete"
    elif open_to_you or holds_lease:
        state = "can_rate"
    elif counts["leased_by_others"]:
        state = "waiting"
        retry_at = (
            Assignment.objects.filter(pair__in=leased, status=AssignmentStatus.LEASED, expires_at__gt=now)
            .order_by("expires_at")
            .values_list("expires_at", flat=True)
            .first()
        )
    else:
        state = "done_for_you"
    return Outlook(state=state, retry_at=retry_at, message=_message(state, counts, retry_at, campaign), **counts)


def stalled_pairs(campaign: Campaign) -> int:
    """Regular pairs short of k valid votes that every annotator assigned to ``campaign`` has seen already (rated
    or skipped): nobody can finish them until annotators are added."""
    annotators = campaign.annotators.all()
    return (
        Pair.objects.filter(campaign=campaign, is_gold=False, withdrawn=False, valid_votes__lt=campaign.votes_per_pair)
        .annotate(seen_by=Count("assignments", filter=Q(assignments__annotator__in=annotators)))
        .filter(seen_by__gte=annotators.count())
        .count()
    )


def _message(state: str, counts: dict, retry_at: datetime | None, campaign: Campaign) -> str:
    if state == "complete":
        return "This campaign has all the votes it needs. Thank you!"
    if state == "can_rate":
        if not counts["open_to_you"]:
            return "A pair is held for you: open the rating page to finish it."
        return f"{counts['open_to_you']} pair(s) are waiting for your vote."
    if state == "waiting":
        minutes = max(1, round((retry_at - timezone.now()).total_seconds() / 60)) if retry_at else 1
        return (
            f"The {counts['leased_by_others']} pair(s) you have not rated are being rated by other annotators right "
            f"now. A pair comes back if its rater skips it or does not answer in time: try again in about "
            f"{minutes} minute(s)."
        )
    others = (
        f" {counts['stalled']} of them cannot be finished by anyone assigned now (each annotator rates a pair once, "
        "a skip included): the campaign's owner can add annotators."
        if counts["stalled"]
        else ""
    )
    return (
        f"You have rated every pair you can. {counts['pairs_needing_votes']} pair(s) still need votes from other "
        f"annotators.{others}"
    )
