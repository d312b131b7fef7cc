"""``/people/``: accounts, their roles and activity, a form that creates annotators and reviewers, invite links;
a person's page with their quality and activity per campaign. Writes go through the REST API
(``POST /api/v1/users/``, ``…/deactivate/``, ``…/reactivate/``, ``invites/``, ``invites/<id>/revoke/``)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from core import people, selectors
from core.roles import GROUP_ROLES, Role
from feedback import selectors as feedback_selectors
from frontend.access import role_required


def _row(user, activity: dict, actor) -> dict:
    return {
        "user": user,
        "roles": people.listed_roles(user),
        "can_manage": people.may_manage(actor, user),
        **activity,
    }


@role_required(Role.ENGINEER)
def people_list(request):
    users = list(selectors.users_with_roles().prefetch_related("annotator_groups")[:1000])
    activity = feedback_selectors.annotator_activity(user.pk for user in users)
    now = timezone.now()
    grantable = [role.value for role in GROUP_ROLES if people.may_grant(request.user, [role])]
    return render(
        request,
        "frontend/people.html",
        {
            "rows": [_row(user, activity[user.pk], request.user) for user in users],
            "grantable": grantable,
            "groups": selectors.annotator_groups(),
            "invites": [_invite_row(invite, now) for invite in selectors.invites()[:50]],
            "invite_days": people.INVITE_DAYS,
            "invite_max_days": people.INVITE_MAX_DAYS,
        },
    )


def _invite_row(invite, now) -> dict:
    return {"invite": invite, "state": people.invite_state(invite, now)}


@role_required(Role.ENGINEER)
def person_detail(request, pk: int):
    person = get_object_or_404(selectors.users_with_roles(), pk=pk)
    activity = feedback_selectors.annotator_activity([person.pk])[person.pk]
    return render(
        request,
        "frontend/person_detail.html",
        {
            "row": _row(person, activity, request.user),
            "campaigns": feedback_selectors.annotator_campaigns(person),
            "is_self": person.pk == request.user.pk,
        },
    )
