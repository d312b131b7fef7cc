"""Every write about withheld images: annotators' reports, safety screens' verdicts, engineers' reviews.

An image is withheld by its first report (an annotator's, from the rating page, or a safety screen's): an
``ImageFlag`` in state ``withdrawn`` and every pair that shows it, in every campaign, marked ``Pair.withdrawn`` in
the same transaction. The hand-out never leases a withdrawn pair again, a lease already held on one cannot be
voted on (409) and its images are no longer served, and its votes are left out of preference datasets, exports and
campaign progress (the votes stay in the database). Engineers review withheld images: ``confirmed`` keeps them out,
``cleared`` returns their pairs (those whose other image is not withheld). A new report after a clearance withholds
the image again. Pairs made later from a withheld image are created withdrawn (``feedback.services``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from feedback.models import (
    WITHHELD_STATES,
    Assignment,
    FlagState,
    ImageFlag,
    ImageReport,
    Pair,
    ReportReason,
)

REPORT_SIDES = ("left", "right", "both")
PERSON_REASONS = (ReportReason.UNSAFE.value, ReportReason.OFFENSIVE.value)
REVIEW_DECISIONS = {"confirm": FlagState.CONFIRMED, "clear": FlagState.CLEARED}
NOTE_MAX_LENGTH = 500


@dataclass(frozen=True)
class ReportOutcome:
    """What a report did: how many images it named, how many it newly withheld, how many pairs it withdrew."""

    images: int
    withheld: int
    pairs_withdrawn: int
    created: bool  # False when this annotator had already reported every image named


def image_report(*, reporter, assignment_id: int, side: str, reason: str, note: str = "") -> ReportOutcome:
    """Report the image shown on ``side`` (left, right or both) of the reporter's assignment as ``reason``
    (unsafe or offensive). Idempotent per annotator and image: the same report again changes nothing."""
    if side not in REPORT_SIDES:
        raise ValidationError({"side": [f"Choose one of {', '.join(REPORT_SIDES)}."]})
    if reason not in PERSON_REASONS:
        raise ValidationError({"reason": [f"Choose one of {', '.join(PERSON_REASONS)}."]})
    if len(note) > NOTE_MAX_LENGTH:
        raise ValidationError({"note": [f"At most {NOTE_MAX_LENGTH} characters."]})
    row = (
        Assignment.objects.filter(pk=assignment_id, annotator_id=reporter.pk)
        .values_list("a_on_left", "pair__image_a_id", "pair__image_b_id", "pair__campaign_id")
        .first()
    )
    if row is None:
        raise Assignment.DoesNotExist(f"No assignment {assignment_id} of yours.")  # another's: the same 404
    a_on_left, image_a, image_b, campaign_id = row
    left, right = (image_a, image_b) if a_on_left else (image_b, image_a)
    images = {"left": [left], "right": [right], "both": [left, right]}[side]
    reports = [
        ImageReport(reporter=reporter, campaign_id=campaign_id, reason=reason, note=note.strip()) for _ in images
    ]
    return _withhold(dict(zip(images, reports, strict=True)))


def image_flags_from_screen(*, screen: str, flagged: Mapping[int, str], campaign_id: int | None = None) -> int:
    """File a safety screen's verdicts (image id → its reason) as reports and withhold those images; returns how
    many images it newly withheld. Idempotent: a screen reports an image once."""
    if not flagged:
        return 0
    reports = {
        image_id: ImageReport(screen=screen, campaign_id=campaign_id, reason=ReportReason.SCREEN, note=why[:500])
        for image_id, why in flagged.items()
    }
    return _withhold(reports).withheld


def _withhold(reports: Mapping[int, ImageReport]) -> ReportOutcome:
    """Store each image's report (unless its author reported it already) and withhold the images it newly reports."""
    withheld = created = 0
    kept_out: list[int] = []
    with transaction.atomic():
        for image_id, report in reports.items():
            flag, new_flag = ImageFlag.objects.select_for_update().get_or_create(image_id=image_id)
            author = {"reporter": report.reporter} if report.reporter is not None else {"screen": report.screen}
            if not ImageReport.objects.filter(flag=flag, **author).exists():
                report.flag = flag
                report.save()
                created += 1
                if new_flag or flag.state == FlagState.CLEARED:
                    withheld += 1
                    if not new_flag:
                        flag.state = FlagState.WITHDRAWN
                        flag.save(update_fields=["state"])
            if flag.state in WITHHELD_STATES:
                kept_out.append(image_id)
        pairs = _pairs_showing(kept_out).filter(withdrawn=False).update(withdrawn=True) if kept_out else 0
    return ReportOutcome(images=len(reports), withheld=withheld, pairs_withdrawn=pairs, created=created > 0)


def _pairs_showing(image_ids: Iterable[int]):
    ids = list(image_ids)
    return Pair.objects.filter(Q(image_a_id__in=ids) | Q(image_b_id__in=ids))


def image_flag_review(*, flag_id: int, decision: str, reviewer, note: str = "") -> ImageFlag:
    """An engineer's decision on a withheld image: ``confirm`` keeps it out, ``clear`` returns its pairs to their
    campaigns (those whose other image is not withheld). Either may follow the other."""
    if decision not in REVIEW_DECISIONS:
        raise ValidationError({"decision": [f"Choose one of {', '.join(REVIEW_DECISIONS)}."]})
    if len(note) > NOTE_MAX_LENGTH:
        raise ValidationError({"note": [f"At most {NOTE_MAX_LENGTH} characters."]})
    with transaction.atomic():
        flag = ImageFlag.objects.select_for_update().get(pk=flag_id)
        flag.state = REVIEW_DECISIONS[decision]
        flag.reviewed_by, flag.reviewed_at, flag.review_note = reviewer, timezone.now(), note.strip()
        flag.save(update_fields=["state", "reviewed_by", "reviewed_at", "review_note"])
        pairs = _pairs_showing([flag.image_id])
        if flag.state in WITHHELD_STATES:
            pairs.filter(withdrawn=False).update(withdrawn=True)
        else:
            withheld = ImageFlag.objects.filter(state__in=WITHHELD_STATES).values("image_id")
            pairs.filter(withdrawn=True).exclude(image_a_id__in=withheld).exclude(image_b_id__in=withheld).update(
                withdrawn=False
            )
    return flag


def withheld_images() -> set[int]:
    """The ids of the images withheld now (few: reports are rare), for the writes that make pairs."""
    return set(ImageFlag.objects.filter(state__in=WITHHELD_STATES).values_list("image_id", flat=True))
