"""generators.services.model_version_create: the one way to record a model version; names unique per base model."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from generators import services
from generators.models import ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def bases():
    return (
        services.base_model_register(name="alpha", source="org/alpha"),
        services.base_model_register(name="beta", source="org/beta"),
    )


def test_a_version_is_recorded_under_its_parent(bases):
    alpha, _ = bases
    base_version = alpha.versions.get(name="base")

    version = services.model_version_create(base_model=alpha, name="tuned", parent=base_version, notes="by hand")

    assert version.parent == base_version and version.base_model == alpha and version.notes == "by hand"


def test_names_are_unique_per_base_model(bases):
    alpha, beta = bases
    services.model_version_create(base_model=alpha, name="tuned")

    with pytest.raises(ValidationError) as taken:
        services.model_version_create(base_model=alpha, name="tuned")

    assert "A version of alpha named 'tuned' already exists." in taken.value.message_dict["name"]
    assert services.model_version_create(base_model=beta, name="tuned").base_model == beta


def test_a_name_taken_by_a_concurrent_request_is_a_validation_error(bases, monkeypatch):
    alpha, _ = bases
    services.model_version_create(base_model=alpha, name="tuned")
    real_filter = ModelVersion.objects.filter
    hidden = []

    def filter_missing_the_name_once(*args, **kwargs):
        # The race: the first check sees no version of that name; the insert then hits the constraint.
        if kwargs.get("name") == "tuned" and not hidden:
            hidden.append(kwargs["name"])
            return real_filter(pk=-1)
        return real_filter(*args, **kwargs)

    monkeypatch.setattr(ModelVersion.objects, "filter", filter_missing_the_name_once)
    with pytest.raises(ValidationError, match="already exists"):
        services.model_version_create(base_model=alpha, name="tuned")
    assert hidden == ["tuned"]


def test_a_parent_of_another_base_model_is_refused(bases):
    alpha, beta = bases
    with pytest.raises(ValidationError) as refused:
        services.model_version_create(base_model=alpha, name="odd", parent=beta.versions.get())
    assert "parent" in refused.value.message_dict
