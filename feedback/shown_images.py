"""A rater's view of a pair's images: opaque URLs per assignment and side, resolved only for the rater.

Image ids grow with generation order, so in an arena the lower id was the base version: a URL with an
image id unblinds the comparison. The rater therefore sees ``/api/v1/rating-images/<token>/<side>/``,
where the token is the assignment's random ``image_token`` and the side is the one it was shown on
(drawn at random per assignment). Only the assignment's holder can resolve it; an unknown token and
someone else's token look the same (None, the API's 404), and so does a withdrawn pair's (an image of it was
reported: ``feedback/safety.py``).
"""

from __future__ import annotations

import re

from feedback.models import Assignment

SIDES = ("left", "right")
# What ``new_image_token`` makes (URL-safe base64); anything else is no token, answered without a query.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,32}")


def image_url(image_token: str, side: str) -> str:
    """The URL of the image shown on ``side`` (``left`` or ``right``) of the assignment with this token."""
    return f"/api/v1/rating-images/{image_token}/{side}/"


def shown_image_id(*, user, image_token: str, side: str) -> int | None:
    """The id of the image ``user`` was shown on ``side`` of their assignment ``image_token``, or None."""
    if side not in SIDES or not _TOKEN_SHAPE.fullmatch(image_token):
        return None
    row = (
        Assignment.objects.filter(image_token=image_token, annotator_id=user.pk, pair__withdrawn=False)
        .values_list("a_on_left", "pair__image_a_id", "pair__image_b_id")
        .first()
    )
    if row is None:
        return None
    a_on_left, image_a, image_b = row
    return image_a if a_on_left == (side == "left") else image_b
