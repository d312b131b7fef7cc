"""Hand-written SQL for the hot paths (token auth, the hand-out, votes), on PostgreSQL and SQLite alike.

On these paths the ORM's query compilation cost more CPU than the database spent, and PostgreSQL spent
more time planning each statement than running it: Django binds parameters on the client, so every
statement text is new. :func:`cursor` therefore gives a server-binding psycopg cursor on PostgreSQL
that prepares each statement once per connection (plans are reused), inside Django's transaction and
with Django's exception classes. Behind a connection pooler in transaction mode that cannot keep
prepared statements (PgBouncer before 1.21), set ``DATABASE_PREPARED_STATEMENTS=false``. On SQLite it
is Django's own cursor.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection
from django.utils.dateparse import parse_datetime


@contextmanager
def cursor() -> Iterator:
    """A DB-API cursor on the default connection (prepared statements on PostgreSQL)."""
    if connection.vendor != "postgresql":
        with connection.cursor() as django_cursor:
            yield django_cursor
        return
    import psycopg

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as server_binding_cursor:
        yield _PreparingCursor(server_binding_cursor, prepare=settings.HOT_PATH_PREPARED_STATEMENTS)


class _PreparingCursor:
    """Prepares each statement on first use (Django turns psycopg's automatic preparing off) and records
    statements in ``connection.queries`` as Django's debug cursor does (DEBUG, query-count tests)."""

    def __init__(self, cursor, *, prepare: bool) -> None:
        self._cursor, self._prepare = cursor, prepare

    def execute(self, sql: str, params=None):
        if not connection.queries_logged:
            return self._cursor.execute(sql, params, prepare=self._prepare)
        began = time.monotonic()
        try:
            return self._cursor.execute(sql, params, prepare=self._prepare)
        finally:
            connection.queries_log.append({"sql": sql, "params": params, "time": f"{time.monotonic() - began:.3f}"})

    def __getattr__(self, name: str):
        return getattr(self._cursor, name)


def db_datetime(value: datetime):
    """``value`` as the database backend stores a DateTimeField (SQLite: naive UTC text)."""
    return connection.ops.adapt_datetimefield_value(value)


def as_aware_datetime(value) -> datetime:
    """A DateTimeField value read by a raw cursor (SQLite returns text) as an aware datetime."""
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def for_update(sql: str, *, of: str = "p", skip_locked: bool = False) -> str:
    """Append ``FOR UPDATE OF <of> [SKIP LOCKED]`` where the database has row locks (not SQLite)."""
    features = connection.features
    if not features.has_select_for_update:
        return sql
    clause = f" FOR UPDATE OF {of}" if features.has_select_for_update_of else " FOR UPDATE"
    if skip_locked and features.has_select_for_update_skip_locked:
        clause += " SKIP LOCKED"
    return sql + clause
