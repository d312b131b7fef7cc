"""Reads of runs, their metrics and artifacts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from core.models import AnnotatorGroup, Artifact, Invite, MetricPoint, Run
from core.roles import Role, has_role


def runs_visible_to(user) -> QuerySet[Run]:
    """Runs a user may see: engineers, reviewers and admins see all; anybody else none."""
    if not has_role(user, Role.ENGINEER, Role.REVIEWER):
        return Run.objects.none()
    return Run.objects.select_related("created_by")


def artifacts_visible_to(user) -> QuerySet[Artifact]:
    """Artifacts of the runs a user may see."""
    return Artifact.objects.filter(run__in=runs_visible_to(user))


def run_metric_series(*, run: Run, since_step: int | None = None) -> dict[str, list[list[float | None]]]:
    """Every metric series of ``run`` as ``{key: [[step, value], ...]}`` ordered by step.

    Non-finite values (a loss that went NaN) are stored and returned as null.
    """
    points = MetricPoint.objects.filter(run=run)
    if since_step is not None:
        points = points.filter(step__gt=since_step)
    series: dict[str, list[list[float | None]]] = defaultdict(list)
    for key, step, value in points.order_by("key", "step").values_list("key", "step", "value"):
        series[key].append([step, value])
    return dict(series)


def users_with_roles() -> QuerySet:
    return get_user_model().objects.prefetch_related("groups").order_by("username")


def usernames_by_id(ids: Iterable[int]) -> dict[int, str]:
    """``{id: username}`` of the users among ``ids`` (unknown ids are absent)."""
    return dict(get_user_model().objects.filter(pk__in=list(ids)).values_list("pk", "username"))


def annotator_groups() -> QuerySet[AnnotatorGroup]:
    return AnnotatorGroup.objects.prefetch_related("members").order_by("name")


def invites() -> QuerySet[Invite]:
    """Invite links, newest first, with their group and the people who made and used them."""
    return Invite.objects.select_related("group", "created_by", "used_by").order_by("-created_at", "-pk")
