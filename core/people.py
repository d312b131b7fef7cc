"""Accounts: who may create, deactivate and reactivate whom (the writes are ``core.services.user_create`` and
``user_set_active``).

Engineers manage annotators and reviewers; admins manage anybody; nobody deactivates themselves. A deactivated
user keeps their votes; ``is_active=False`` refuses their logins and tokens (``core.authentication``).
"""

from __future__ import annotations

import secrets

from core.roles import GROUP_ROLES, Role, has_role

# Roles an engineer may give or manage; admins may give any group role.
ENGINEER_MANAGED = frozenset({Role.ANNOTATOR, Role.REVIEWER})


def may_grant(actor, roles) -> bool:
    """Whether ``actor`` may create an account holding ``roles``."""
    if has_role(actor, Role.ADMIN):
        return True
    return has_role(actor, Role.ENGINEER) and set(roles) <= ENGINEER_MANAGED


def may_manage(actor, target) -> bool:
    """Whether ``actor`` may deactivate or reactivate ``target`` (never themselves)."""
    if actor.pk == target.pk:
        return False
    if has_role(actor, Role.ADMIN):
        return True
    if target.is_staff or target.is_superuser:
        return False
    return has_role(actor, Role.ENGINEER) and group_roles_of(target) <= ENGINEER_MANAGED


def group_roles_of(user) -> set[Role]:
    """The group roles of ``user``, active or not (``user_roles`` answers nothing for an inactive user); reads
    ``user.groups.all()``, so a prefetch of ``groups`` serves it."""
    names = {group.name for group in user.groups.all()}
    return {role for role in GROUP_ROLES if role.value in names}


def listed_roles(user) -> list[str]:
    """The roles a user holds as listed on the people page and ``GET users/``: their groups, and admin for staff,
    whether or not the account is active."""
    roles = group_roles_of(user) | ({Role.ADMIN} if user.is_staff or user.is_superuser else set())
    return sorted(role.value for role in roles)


def generated_password() -> str:
    return secrets.token_urlsafe(12)
