"""The published OpenAPI schema documents the error answers and the fields that may be null."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client_for) -> dict:
    response = client_for("engineer").get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, operation


def test_every_operation_documents_its_error_answers(schema):
    missing = []
    for path, method, operation in _operations(schema):
        expected = set()
        if method != "get":
            expected |= {"400", "404"}
        if operation.get("security") not in ([], [{}]):
            expected |= {"401", "403"}
        if "{" in path:
            expected.add("404")
        missing += [f"{method} {path}: {code}" for code in sorted(expected - set(operation["responses"]))]
    assert missing == []


def test_list_pages_document_their_maximum(schema):
    (limit,) = [p for p in schema["paths"]["/api/v1/runs/"]["get"]["parameters"] if p["name"] == "limit"]
    assert "at most 500" in limit["description"]


def test_ids_in_paths_are_64_bit(schema):
    (param,) = schema["paths"]["/api/v1/runs/{id}/"]["get"]["parameters"]
    assert param["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}


@pytest.mark.parametrize("component", ["Run", "RunDetail", "RewardModel"])
def test_created_by_is_nullable(schema, component):
    assert schema["components"]["schemas"][component]["properties"]["created_by"]["nullable"] is True
