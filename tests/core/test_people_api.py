"""Accounts through the API: create (400 messages, who may give which role), deactivate and reactivate (who may
whom; a deactivated user keeps their votes and can neither log in nor use a token)."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core import people
from feedback import selectors as feedback_selectors
from feedback.models import Vote

pytestmark = pytest.mark.django_db


@pytest.fixture
def voted(users, settings, tmp_path):
    """The annotator's one vote in a one-pair campaign (the campaign)."""
    from feedback import handout
    from feedback import services as feedback_services
    from generators import services as generator_services
    from generators.models import ModelVersion
    from tests.support.images import store_images, tiny_png

    settings.MEDIA_ROOT = tmp_path
    base = generator_services.base_model_register(name="tiny", source="org/tiny")
    prompt_set = generator_services.prompt_set_create(name="few", split="eval", prompts=["a red circle"])
    version = ModelVersion.objects.get(base_model=base)
    store_images(version, [(prompt_set.prompts.get(), seed, tiny_png(40 * seed, 90, 30)) for seed in (0, 1)])
    campaign = feedback_services.campaign_create(
        name="people",
        purpose="collect",
        prompt_set=prompt_set,
        model_versions=[version],
        annotators=[users["annotator"]],
    )
    assignment = handout.next_assignment(annotator=users["annotator"], campaign=campaign)
    feedback_services.vote_submit(annotator=users["annotator"], assignment_id=assignment.assignment, submitted="left")
    return campaign


def test_engineer_creates_an_annotator_with_a_generated_password_shown_once(client_for, django_user_model):
    response = client_for("engineer").post("/api/v1/users/", {"username": "ann2"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["username"] == "ann2" and body["roles"] == ["annotator"] and body["is_active"] is True
    password = body["generated_password"]
    assert len(password) >= 12 and django_user_model.objects.get(username="ann2").check_password(password)
    listed = client_for("engineer").get("/api/v1/users/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert "generated_password" not in next(row for row in rows if row["username"] == "ann2")
    # token auth works for scripts with the new account
    token = APIClient().post("/api/v1/auth/token/", {"username": "ann2", "password": password}, format="json")
    assert token.status_code == 200


def test_given_password_and_reviewer_role(client_for, django_user_model):
    response = client_for("engineer").post(
        "/api/v1/users/",
        {"username": "rev2", "password": "a-long-passphrase-91", "roles": ["reviewer", "annotator"]},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["roles"] == ["annotator", "reviewer"] and "generated_password" not in response.json()
    assert django_user_model.objects.get(username="rev2").check_password("a-long-passphrase-91")


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"username": "annotator"}, "username", "already exists"),
        ({"username": "ANNOTATOR"}, "username", "already exists"),
        ({"username": "bad name!"}, "username", "valid username"),
        ({"username": "new1", "password": "short"}, "password", "too short"),
        ({"username": "new1", "password": "password123"}, "password", "too common"),
        ({"username": "new1", "password": "12345678901"}, "password", "entirely numeric"),
        ({"username": "new1", "roles": ["chef"]}, "roles", "not a valid choice"),
        ({"username": "new1", "admin": True}, "admin", ""),
    ],
)
def test_create_answers_400_naming_what_to_fix(client_for, users, body, field, words):
    response = client_for("engineer").post("/api/v1/users/", body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()
    assert words in str(response.json()[field]).lower()


def test_engineers_cannot_create_engineers_admins_can(client_for, django_user_model):
    refused = client_for("engineer").post("/api/v1/users/", {"username": "eng2", "roles": ["engineer"]}, format="json")
    assert refused.status_code == 403 and "admins" in refused.json()["detail"]
    assert not django_user_model.objects.filter(username="eng2").exists()

    allowed = client_for("admin").post("/api/v1/users/", {"username": "eng2", "roles": ["engineer"]}, format="json")
    assert allowed.status_code == 201 and allowed.json()["roles"] == ["engineer"]


@pytest.mark.parametrize("role", ["annotator", "reviewer", "norole"])
def test_non_engineers_cannot_create_or_deactivate(client_for, users, role):
    client = client_for(role)
    assert client.post("/api/v1/users/", {"username": "x1"}, format="json").status_code == 403
    assert client.post(f"/api/v1/users/{users['annotator'].pk}/deactivate/").status_code == 403
    users["annotator"].refresh_from_db()
    assert users["annotator"].is_active


def test_deactivated_annotator_keeps_votes_cannot_log_in_or_use_a_token(client_for, users, voted):
    annotator = users["annotator"]
    token = Token.objects.create(user=annotator)
    script = APIClient()
    script.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert script.get("/api/v1/me/").status_code == 200

    response = client_for("engineer").post(f"/api/v1/users/{annotator.pk}/deactivate/")

    assert response.status_code == 200 and response.json()["is_active"] is False
    assert response.json()["roles"] == ["annotator"]  # groups kept: reactivating restores them
    refused = script.get("/api/v1/me/")
    assert refused.status_code == 401 and "inactive" in refused.json()["detail"]
    login = APIClient().post(
        "/api/v1/auth/token/", {"username": "annotator", "password": "annotator-pass-123"}, format="json"
    )
    assert login.status_code == 400
    page = Client().post("/login/", {"username": "annotator", "password": "annotator-pass-123"})
    assert page.status_code == 200 and "_auth_user_id" not in page.client.session

    assert Vote.objects.filter(annotator=annotator).count() == 1
    assert feedback_selectors.annotator_activity([annotator.pk])[annotator.pk]["votes"] == 1

    again = client_for("engineer").post(f"/api/v1/users/{annotator.pk}/reactivate/")
    assert again.status_code == 200 and again.json()["is_active"] is True
    assert script.get("/api/v1/me/").status_code == 200


def test_who_may_deactivate_whom(client_for, users):
    engineer = client_for("engineer")
    assert engineer.post(f"/api/v1/users/{users['reviewer'].pk}/deactivate/").status_code == 200
    refused = engineer.post(f"/api/v1/users/{users['admin'].pk}/deactivate/")
    assert refused.status_code == 403 and "annotators and reviewers" in refused.json()["detail"]
    assert engineer.post(f"/api/v1/users/{users['engineer'].pk}/deactivate/").status_code == 403  # themselves
    assert client_for("admin").post(f"/api/v1/users/{users['engineer'].pk}/deactivate/").status_code == 200
    assert client_for("admin").post(f"/api/v1/users/{users['admin'].pk}/deactivate/").status_code == 403
    assert client_for("admin").post("/api/v1/users/999999/deactivate/").status_code == 404


def test_rules(users):
    assert people.may_grant(users["engineer"], ["annotator", "reviewer"])
    assert not people.may_grant(users["engineer"], ["engineer"])
    assert people.may_grant(users["admin"], ["engineer"])
    assert not people.may_grant(users["reviewer"], ["annotator"])
    assert not people.may_manage(users["engineer"], users["engineer"])
    assert people.may_manage(users["engineer"], users["annotator"])
    assert not people.may_manage(users["engineer"], users["admin"])


def test_a_deactivated_annotators_votes_can_be_left_out_of_an_export(client_for, users, voted, tmp_path):
    import io
    import json

    from django.core.management import call_command

    from feedback.exports import pickapic_rows

    client_for("engineer").post(f"/api/v1/users/{users['annotator'].pk}/deactivate/")

    kept, _ = pickapic_rows([voted])
    left_out, excluded = pickapic_rows([voted], exclude_users=["annotator"])
    assert len(kept) == 1 and left_out == [] and excluded == {voted.pk: {"annotator"}}
    assert Vote.objects.filter(annotator=users["annotator"]).count() == 1  # still stored

    out, stdout = tmp_path / "v.parquet", io.StringIO()
    call_command("export_votes", campaign=voted.pk, out=str(out), stdout=stdout)
    assert json.loads(stdout.getvalue())["rows"] == 1
    with pytest.raises(Exception, match="no votes"):
        call_command("export_votes", campaign=voted.pk, out=str(out), exclude_user=["annotator"], stdout=stdout)


def test_session_posts_need_the_csrf_token_and_scripts_use_a_token(users):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(users["engineer"])
    refused = browser.post("/api/v1/users/", {"username": "viaform"}, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]

    script = APIClient()
    script.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=users['engineer']).key}")
    created = script.post("/api/v1/users/", {"username": "viascript", "roles": ["reviewer"]}, format="json")
    assert created.status_code == 201 and created.json()["roles"] == ["reviewer"]
