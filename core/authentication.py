"""Token authentication that reads the token's user and the user's roles in one query.

DRF's ``TokenAuthentication`` takes one query for the token and user, and the first role check takes
another for the groups. On the annotators' hot path (next pair → vote) every query counts, so one
hand-written statement (plain SQL that SQLite and PostgreSQL both run) returns the user with one
``EXISTS`` column per group role, and the roles are cached on the user (see :func:`core.roles.user_roles`).
Building the same query with the ORM cost more Python time than the database spent on it.
"""

from __future__ import annotations

from functools import cache

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from core.roles import GROUP_ROLES, remember_roles


@cache
def _user_with_roles_sql() -> str:
    user_table = get_user_model()._meta.db_table
    memberships = get_user_model().groups.through._meta.db_table
    member_of = f"SELECT 1 FROM {memberships} m JOIN {Group._meta.db_table} g ON g.id = m.group_id"  # noqa: S608
    columns = ", ".join(
        f"EXISTS ({member_of} WHERE m.user_id = u.id AND g.name = %s) AS in_{role.value}" for role in GROUP_ROLES
    )
    tables = f"{user_table} u JOIN {Token._meta.db_table} t ON t.user_id = u.id"
    return f"SELECT u.*, {columns} FROM {tables} WHERE t.key = %s"  # noqa: S608 - values are parameters


class TokenWithRolesAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``; same semantics and errors as DRF's, one query instead of two."""

    def authenticate_credentials(self, key: str):
        user = next(iter(get_user_model().objects.raw(_user_with_roles_sql(), [*GROUP_ROLES, key])), None)
        if user is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        remember_roles(user, {role for role in GROUP_ROLES if getattr(user, f"in_{role.value}")})
        return user, Token(key=key, user=user)
