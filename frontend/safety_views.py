"""``/safety/``: the images withheld from annotators (reported on the rating page or flagged by a safety screen),
awaiting review first, for engineers to keep out or return to their campaigns. The decisions go through the REST
API (``POST /api/v1/image-flags/<id>/review/``)."""

from __future__ import annotations

from django.shortcuts import render

from core.roles import Role
from feedback import safety_selectors
from feedback.models import FlagState
from frontend.access import role_required

PAGE_SIZE = 200


@role_required(Role.ENGINEER)
def safety_review(request):
    state = request.GET.get("state", "")
    flags = safety_selectors.image_flags(state if state in FlagState.values else None)
    return render(
        request,
        "frontend/safety_review.html",
        {
            "flags": list(flags[:PAGE_SIZE]),
            "state": state if state in FlagState.values else "",
            "states": FlagState.choices,
            "awaiting": safety_selectors.awaiting_review_count(),
        },
    )
