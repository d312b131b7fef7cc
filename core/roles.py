"""The four roles of the platform and how a user's roles are read.

Annotators, engineers and reviewers are Django groups; admins are staff users. An admin passes
every role check.
"""

from __future__ import annotations

from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


class Role(StrEnum):
    ANNOTATOR = "annotator"
    ENGINEER = "engineer"
    REVIEWER = "reviewer"
    ADMIN = "admin"


GROUP_ROLES = (Role.ANNOTATOR, Role.ENGINEER, Role.REVIEWER)


def user_roles(user: AbstractBaseUser | AnonymousUser | None) -> frozenset[Role]:
    """The roles a user holds (empty for anonymous or inactive users). Cached on the user object."""
    if user is None or not user.is_authenticated or not user.is_active:
        return frozenset()
    cached = getattr(user, "_platform_roles", None)
    if cached is not None:
        return cached
    names = set(user.groups.values_list("name", flat=True))
    return remember_roles(user, {role for role in GROUP_ROLES if role.value in names})


def remember_roles(user: AbstractBaseUser, group_roles: set[Role]) -> frozenset[Role]:
    """Cache the roles of ``user`` given its group roles (staff adds admin); returns them."""
    roles = set(group_roles)
    if user.is_staff or user.is_superuser:
        roles.add(Role.ADMIN)
    user._platform_roles = frozenset(roles)
    return user._platform_roles


def has_role(user: AbstractBaseUser | AnonymousUser | None, *roles: Role) -> bool:
    """True when the user holds any of ``roles``; admins hold every role."""
    held = user_roles(user)
    return Role.ADMIN in held or any(role in held for role in roles)
