"""DRF permission classes per role. Every API view names the roles it admits; the default denies."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from core.roles import Role, has_role


class DenyAll(BasePermission):
    """The project default: a view that does not say who may call it admits nobody."""

    message = "This endpoint admits nobody by default."

    def has_permission(self, request, view) -> bool:
        return False


class _RolePermission(BasePermission):
    roles: tuple[Role, ...] = ()

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, *self.roles)


class IsAnnotator(_RolePermission):
    roles = (Role.ANNOTATOR,)
    message = "Only annotators may do this."


class IsEngineer(_RolePermission):
    roles = (Role.ENGINEER,)
    message = "Only ML engineers may do this."


class IsReviewer(_RolePermission):
    roles = (Role.REVIEWER,)
    message = "Only reviewers may do this."


class IsEngineerOrReviewer(_RolePermission):
    roles = (Role.ENGINEER, Role.REVIEWER)
    message = "Only ML engineers and reviewers may do this."


class IsAdmin(_RolePermission):
    roles = (Role.ADMIN,)
    message = "Only admins may do this."


class IsAuthenticatedUser(BasePermission):
    """Any logged-in user with any role (used for 'who am I')."""

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated)


class EngineerWritesStaffReads(BasePermission):
    """Engineers read and write; reviewers read only (runs, models, prompt sets)."""

    message = "Reviewers may read this; only ML engineers may change it."

    def has_permission(self, request, view) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return has_role(request.user, Role.ENGINEER, Role.REVIEWER)
        return has_role(request.user, Role.ENGINEER)


# Run kinds a reviewer may start: they make and score images to compare, never train anything.
REVIEWER_RUN_KINDS = frozenset({"generate", "evaluate"})


def may_start_run(user, kind: str) -> bool:
    """Whether ``user`` may start a run of ``kind``: engineers (and admins) any, reviewers generate/evaluate."""
    return has_role(user, Role.ENGINEER) or (kind in REVIEWER_RUN_KINDS and has_role(user, Role.REVIEWER))


# Campaign purposes a reviewer may create: an arena compares versions blind, the reviewer's own job; collect
# campaigns gather training data and stay with engineers.
REVIEWER_CAMPAIGN_PURPOSES = frozenset({"arena"})


def may_create_campaign(user, purpose: str | None = None) -> bool:
    """Whether ``user`` may create a campaign of ``purpose`` (None: of some purpose): engineers (and admins) any,
    reviewers arena campaigns."""
    if has_role(user, Role.ENGINEER):
        return True
    return has_role(user, Role.REVIEWER) and (purpose is None or purpose in REVIEWER_CAMPAIGN_PURPOSES)


class RunStartAccess(EngineerWritesStaffReads):
    """Runs: engineers start any kind; reviewers read, and start only image generation and scoring."""

    message = "Reviewers may start only generate and evaluate runs; only ML engineers may start training."

    def has_permission(self, request, view) -> bool:
        if super().has_permission(request, view):
            return True
        kind = request.data.get("kind") if isinstance(request.data, dict) else None
        return request.method == "POST" and isinstance(kind, str) and may_start_run(request.user, kind)
