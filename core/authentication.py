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
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from core import hot_sql
from core.roles import GROUP_ROLES, remember_roles


@cache
def _user_columns() -> tuple[str, ...]:
    return tuple(field.attname for field in get_user_model()._meta.concrete_fields)


@cache
def _user_with_roles_sql() -> str:
    user_table = get_user_model()._meta.db_table
    memberships = get_user_model().groups.through._meta.db_table
    member_of = f"SELECT 1 FROM {memberships} m JOIN {Group._meta.db_table} g ON g.id = m.group_id"  # noqa: S608
    columns = ", ".join(
        f"EXISTS ({member_of} WHERE m.user_id = u.id AND g.name = %s) AS in_{role.value}" for role in GROUP_ROLES
    )
    tables = f"{user_table} u JOIN {Token._meta.db_table} t ON t.user_id = u.id"
    user_columns = ", ".join(f"u.{name}" for name in _user_columns())
    return f"SELECT {user_columns}, {columns} FROM {tables} WHERE t.key = %s"  # noqa: S608 - values are parameters


class TokenWithRolesAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``; same semantics and errors as DRF's, one query instead of two."""

    def authenticate_credentials(self, key: str):
        with hot_sql.cursor() as cursor:
            cursor.execute(_user_with_roles_sql(), [*GROUP_ROLES, key])
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        columns = _user_columns()
        user = get_user_model().from_db(connection.alias, columns, row[: len(columns)])
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        remember_roles(user, {role for role, member in zip(GROUP_ROLES, row[len(columns) :], strict=True) if member})
        return user, Token(key=key, user=user)
