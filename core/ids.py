"""Ids that come in from outside (URLs, query strings, request bodies, run configs) are bounded to the
database's 64-bit primary keys, so that an out-of-range number answers 400/404 instead of reaching the database.
"""

from __future__ import annotations

from rest_framework import serializers

MAX_ID = 2**63 - 1


class IdField(serializers.IntegerField):
    """A positive 64-bit id (a primary key named in a request or a run config)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


class BoundedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """``PrimaryKeyRelatedField`` that rejects ids beyond 64 bits (and non-positive ones) as "does not exist"
    before querying."""

    def to_internal_value(self, data):
        if isinstance(data, int) and not isinstance(data, bool) and not 1 <= data <= MAX_ID:
            self.fail("does_not_exist", pk_value=data)
        text = data.strip() if isinstance(data, str) else ""
        if text.isascii() and text.isdigit() and not 1 <= int(text) <= MAX_ID:  # ('²'.isdigit(), but int('²') fails)
            self.fail("does_not_exist", pk_value=data)
        return super().to_internal_value(data)


class IdConverter:
    """URL converter ``<id:pk>``: digits that fit a 64-bit primary key; anything longer or larger is a 404."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValueError(f"{value} is beyond the id range")
        return number

    def to_url(self, value) -> str:
        return str(int(value))
