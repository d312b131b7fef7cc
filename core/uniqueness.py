"""Creating rows whose name is unique, with a 400 (not a 500) when two requests race for a name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction

T = TypeVar("T")


def create_named(
    model: type[models.Model],
    name: str,
    label: str,
    create: Callable[[], T],
    *,
    scope: Mapping[str, Any] | None = None,
) -> T:
    """Run ``create`` (in a transaction) unless a ``model`` named ``name`` exists (within ``scope``, field
    lookups such as ``{"base_model": base}`` when names are unique per parent).

    The check up front gives the usual message; a concurrent request that takes the name between the
    check and the insert reaches the unique constraint, which is reported with the same message.
    """
    taken = ValidationError({"name": [f"A {label} named {name!r} already exists."]})

    def exists() -> bool:
        return model.objects.filter(name=name, **(scope or {})).exists()

    if exists():
        raise taken
    try:
        with transaction.atomic():
            return create()
    except IntegrityError as exc:
        if exists():
            raise taken from exc
        raise
