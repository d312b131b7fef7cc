"""Run config forms from the API's own serializers: a DRF serializer described as a list of field specs.

A spec is a JSON object the browser renders as an input (``frontend/static/frontend/run_form.js``)::

    {"name", "label", "type", "required", "nullable", "help_text", "group",      # always
     "default", "min", "max", "min_exclusive", "max_exclusive", "min_length",   # when the field has them
     "max_length", "choices": [{"value", "label"}], "model",                    # (id fields: the model they name)
     "item": <spec of a list's items>, "children": [<specs of an object's fields>]}

``type`` is one of :data:`FIELD_TYPES`. A new serializer field appears in the form with no template work.

Some serializers take settings outside their declared fields (a trainer's dataclass given at the top level of the
config and checked by that class). They describe those through a hook, so core never imports the app: the
serializer class's ``form_extra_fields()`` classmethod, or a provider registered here with
:func:`register_extra_fields` (by whoever knows both, at start-up). :func:`dataclass_field_specs` turns a
dataclass into specs (type and default from the dataclass, ranges and choices from the caller). An extra spec
replaces a declared field of the same name (``reward_train`` declares its settings as untyped JSON fields).

Related fields with ``many=True`` become lists of their child; a ``SlugRelatedField`` becomes a ``choice`` of the
slugs its queryset holds when described (e.g. the usernames a campaign may name). Id fields (``core.ids.IdField``,
``PrimaryKeyRelatedField``) become ``type: "id"``; :func:`with_id_choices`
offers their existing rows (at most :data:`ID_CHOICES_LIMIT`, newest first) as ``choices`` where the field's
model is known: a ``PrimaryKeyRelatedField``'s queryset, or a source registered for the field's name with
:func:`register_id_source` (an ``IdField`` does not name its model).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rest_framework import serializers
from rest_framework.fields import empty

from core.ids import IdField

FIELD_TYPES = ("integer", "number", "boolean", "choice", "string", "id", "list", "object")
ID_CHOICES_LIMIT = 200

ExtraFields = Callable[[], list[dict]]
_EXTRA_FIELDS: dict[type, ExtraFields] = {}


@dataclass(frozen=True)
class IdSource:
    """The model an id field names (``app_label.Model``) and the rows a user may choose, as ``(id, label)``, newest
    first: ``rows(user, limit)``."""

    model: str
    rows: Callable[[Any, int], Iterable[tuple[int, str]]]


_ID_SOURCES: dict[str, IdSource] = {}


def register_extra_fields(serializer_class: type, provider: ExtraFields) -> None:
    """Specs of settings ``serializer_class`` accepts beyond its declared fields (used when the class has no
    ``form_extra_fields`` classmethod of its own)."""
    _EXTRA_FIELDS[serializer_class] = provider


def register_id_source(field_names: Iterable[str], source: IdSource) -> None:
    """Id fields named ``field_names`` (in any serializer, and the items of such lists) name ``source.model``."""
    for name in field_names:
        _ID_SOURCES[name] = source


def extra_fields(serializer_class: type) -> list[dict]:
    hook = getattr(serializer_class, "form_extra_fields", None)
    if callable(hook):
        return list(hook())
    for klass in serializer_class.__mro__:
        if klass in _EXTRA_FIELDS:
            return list(_EXTRA_FIELDS[klass]())
    return []


def describe_serializer(serializer: type[serializers.Serializer] | serializers.Serializer) -> list[dict]:
    """The writable fields of ``serializer`` (a class or an instance) as specs, in declaration order, then its
    extra fields (an extra with a declared field's name takes that field's place)."""
    instance = serializer() if isinstance(serializer, type) else serializer
    specs = [describe_field(name, field) for name, field in instance.fields.items() if not field.read_only]
    position = {spec["name"]: i for i, spec in enumerate(specs)}
    for extra in extra_fields(type(instance)):
        if extra["name"] in position:
            specs[position[extra["name"]]] = extra
        else:
            specs.append(extra)
    return specs


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    return value


def _default_of(field: serializers.Field) -> Any:
    default = field.default
    if default is empty:
        return empty
    if callable(default):
        if getattr(default, "requires_context", False):
            return empty  # depends on the serializer being validated: the server decides
        default = default()
    return _json_value(default)


def _spec(name: str, label: str | None, kind: str, **extra: Any) -> dict:
    spec = {
        "name": name,
        "label": label or _label(name),
        "type": kind,
        "required": False,
        "nullable": False,
        "help_text": "",
        "group": None,
    }
    spec.update({key: value for key, value in extra.items() if value is not None or key == "default"})
    return spec


def describe_field(name: str, field: serializers.Field, source_name: str | None = None) -> dict:
    """One field as a spec; ``source_name`` is the name an id field's model is looked up by (a list's items are
    looked up by the list's name)."""
    lookup = source_name or name
    common = {
        "required": bool(field.required),
        "nullable": bool(field.allow_null),
        "help_text": str(field.help_text or ""),
    }
    default = _default_of(field)
    if default is not empty:
        common["default"] = default
    label = str(field.label) if field.label else None

    if isinstance(field, serializers.ListSerializer):
        return _spec(name, label, "list", item=describe_field("", field.child, lookup), **common)
    if isinstance(field, serializers.Serializer):
        return _spec(name, label, "object", children=describe_serializer(field), **common)
    if isinstance(field, serializers.ListField):
        item = describe_field("", field.child, lookup)
        return _spec(name, label, "list", item=item, min_length=field.min_length, max_length=field.max_length, **common)
    if isinstance(field, serializers.ManyRelatedField):  # a related field with many=True: a list of its child
        return _spec(name, label, "list", item=describe_field("", field.child_relation, lookup), **common)
    if isinstance(field, serializers.SlugRelatedField) and field.queryset is not None:
        return _spec(name, label, "choice", choices=_slug_choices(field), **common)
    if isinstance(field, serializers.PrimaryKeyRelatedField):
        model = field.queryset.model._meta.label if field.queryset is not None else None
        source = _ID_SOURCES.get(lookup)
        return _spec(name, label, "id", model=source.model if source else model, **common)
    if isinstance(field, IdField):
        source = _ID_SOURCES.get(lookup)
        return _spec(name, label, "id", model=source.model if source else None, **common)
    if isinstance(field, serializers.BooleanField):
        return _spec(name, label, "boolean", **common)
    if isinstance(field, serializers.ChoiceField):
        choices = [{"value": _json_value(value), "label": str(text)} for value, text in field.choices.items()]
        return _spec(name, label, "choice", choices=choices, **common)
    if isinstance(field, serializers.IntegerField):
        return _spec(name, label, "integer", min=field.min_value, max=field.max_value, **common)
    if isinstance(field, serializers.FloatField | serializers.DecimalField):
        low, high = field.min_value, field.max_value
        return _spec(
            name,
            label,
            "number",
            min=float(low) if low is not None else None,
            max=float(high) if high is not None else None,
            **common,
        )
    if isinstance(field, serializers.CharField):
        return _spec(name, label, "string", min_length=field.min_length, max_length=field.max_length, **common)
    if isinstance(field, serializers.DictField | serializers.JSONField):
        return _spec(name, label, "object", **common)  # no children: any JSON object
    return _spec(name, label, "string", **common)


def _slug_choices(field: serializers.SlugRelatedField, limit: int | None = None) -> list[dict]:
    """The values a slug field accepts now (its queryset's, in slug order, at most ``limit``): read when described."""
    slug = field.slug_field
    rows = field.get_queryset().order_by(slug).values_list(slug, flat=True)[: limit or ID_CHOICES_LIMIT]
    return [{"value": value, "label": str(value)} for value in rows]


# --- Dataclass settings ------------------------------------------------------------------------------------------

_SIMPLE_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}
_COMMENTED_FIELD = re.compile(r"^\s+(\w+)\s*:[^=#]*=[^#]*#\s*(.+?)\s*$")


def source_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` for the fields of ``cls`` written ``name: type = default  # comment``."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {match[1]: match[2] for line in source.splitlines() if (match := _COMMENTED_FIELD.match(line))}


def _type_spec(hint: Any) -> tuple[str, bool, dict]:
    """(spec type, nullable, extra keys) of a dataclass field's type."""
    nullable = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        nullable = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else Any
    origin = typing.get_origin(hint) or hint
    if origin in (list, tuple):
        args = [arg for arg in typing.get_args(hint) if arg is not Ellipsis]
        item_type = _SIMPLE_TYPES.get(args[0], "string") if args else "string"
        return "list", nullable, {"item": _spec("", None, item_type)}
    return _SIMPLE_TYPES.get(origin, "string"), nullable, {}


def dataclass_field_specs(
    cls: type,
    *,
    group: str | None = None,
    main: Iterable[str] = (),
    exclude: Iterable[str] = (),
    int_ranges: Mapping[str, tuple[int, int]] | None = None,
    choices: Mapping[str, Iterable[str]] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict]:
    """Specs of a settings dataclass's fields: type and default from the dataclass, help from the field's
    ``help`` metadata or its source comment, ``min``/``max`` from ``int_ranges``, ``choices`` (a string field
    becomes a choice), any other keys from ``overrides``. Every field is optional (the dataclass has its
    default); fields go in ``group`` (a collapsed section) except those named in ``main``."""
    hints = typing.get_type_hints(cls)
    comments = source_comments(cls)
    main, exclude = set(main), set(exclude)
    int_ranges, choices, overrides = int_ranges or {}, choices or {}, overrides or {}
    specs = []
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        kind, nullable, extra = _type_spec(hints[field.name])
        if field.default is not dataclasses.MISSING:
            extra["default"] = _json_value(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            extra["default"] = _json_value(field.default_factory())
        if field.name in int_ranges:
            extra["min"], extra["max"] = int_ranges[field.name]
        if field.name in choices:
            kind = "choice"
            extra["choices"] = [{"value": value, "label": str(value)} for value in choices[field.name]]
        spec = _spec(
            field.name,
            None,
            kind,
            nullable=nullable,
            help_text=field.metadata.get("help") or comments.get(field.name, ""),
            group=None if field.name in main else group,
            **extra,
        )
        spec.update(overrides.get(field.name, {}))
        specs.append(spec)
    return specs


# --- Id choices --------------------------------------------------------------------------------------------------


def with_id_choices(specs: list[dict], user, cache: dict | None = None, limit: int = ID_CHOICES_LIMIT) -> list[dict]:
    """A copy of ``specs`` whose id fields (also inside lists and objects) offer the rows of their model that
    ``user`` may choose as ``choices`` (``{"value": id, "label": "name (#id)"}``, newest first, at most ``limit``).
    ``cache`` shares the rows between calls (one query per model per request)."""
    cache = {} if cache is None else cache
    return [_with_choices(spec, user, cache, limit) for spec in specs]


def _with_choices(spec: dict, user, cache: dict, limit: int) -> dict:
    spec = dict(spec)
    if spec["type"] == "id" and spec.get("model"):
        spec["choices"] = _rows(spec["model"], user, cache, limit)
    if "item" in spec:
        spec["item"] = _with_choices(spec["item"], user, cache, limit)
    if "children" in spec:
        spec["children"] = [_with_choices(child, user, cache, limit) for child in spec["children"]]
    return spec


def _rows(model: str, user, cache: dict, limit: int) -> list[dict]:
    if model not in cache:
        source = next((s for s in _ID_SOURCES.values() if s.model == model), None)
        if source is not None:
            rows = list(source.rows(user, limit))[:limit]
        else:
            from django.apps import apps

            rows = [(obj.pk, str(obj)) for obj in apps.get_model(model).objects.order_by("-pk")[:limit]]
        cache[model] = [{"value": pk, "label": f"{text} (#{pk})"} for pk, text in rows]
    return cache[model]
