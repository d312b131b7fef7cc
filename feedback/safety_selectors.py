"""Reads about withheld images: the engineers' review list (``feedback/safety.py`` writes them)."""

from __future__ import annotations

from django.db.models import Case, F, Func, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce

from feedback.models import FlagState, ImageFlag, ImageReport, Pair


def image_flags(state: str | None = None) -> QuerySet[ImageFlag]:
    """Withheld and reviewed images with their reports, image, prompt and version, and ``pairs`` (how many pairs of
    any campaign show the image), those awaiting review first, then the newest; ``state`` keeps one state."""
    flags = ImageFlag.objects.all()
    if state:
        flags = flags.filter(state=state)
    showing = (
        Pair.objects.filter(Q(image_a_id=OuterRef("image_id")) | Q(image_b_id=OuterRef("image_id")))
        .order_by()
        .annotate(n=Func(F("id"), function="COUNT"))
        .values("n")
    )
    reports = ImageReport.objects.select_related("reporter", "campaign").order_by("id")
    return (
        flags.select_related("image__prompt", "image__model_version", "reviewed_by")
        .prefetch_related(Prefetch("reports", queryset=reports))
        .annotate(
            pairs=Coalesce(Subquery(showing, output_field=IntegerField()), 0),
            awaiting=Case(When(state=FlagState.WITHDRAWN, then=Value(0)), default=Value(1)),
        )
        .order_by("awaiting", "-created_at", "-id")
    )


def awaiting_review_count() -> int:
    """How many withheld images no engineer has reviewed yet."""
    return ImageFlag.objects.filter(state=FlagState.WITHDRAWN).count()
