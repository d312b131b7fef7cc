"""Invite links for new annotators: engineers and admins create them (POST /api/v1/invites/, the people page), the
invitee opens the link, chooses a username and password and gets an annotator account in the invite's group; a link
is single use, expires, can be withdrawn, and only its token's hash is stored."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from core import services
from core.models import AnnotatorGroup, Invite
from core.roles import Role, user_roles

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-Passphrase-42"


def _create(client, **body):
    response = client.post("/api/v1/invites/", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def _accept(url: str, username: str = "newbie", password: str = PASSWORD, again: str | None = None):
    client = Client()
    page = client.post(url, {"username": username, "password": password, "password_again": again or password})
    return client, page


def test_an_engineer_invites_and_the_invitee_makes_an_annotator_account_in_the_group(client_for, users):
    group = AnnotatorGroup.objects.create(name="night-shift")
    body = _create(client_for("engineer"), group="night-shift", note="for Ada", days=7)

    assert body["state"] == "pending" and body["group"] == "night-shift" and body["created_by"] == "engineer"
    assert body["url"] == f"http://testserver/invite/{body['token']}/"
    invite = Invite.objects.get(pk=body["id"])
    assert invite.token_hash == hashlib.sha256(body["token"].encode()).hexdigest()
    assert body["token"] not in str(Invite.objects.filter(pk=invite.pk).values().get())  # only the hash is stored
    lifetime = invite.expires_at - invite.created_at
    assert timedelta(days=7) - timedelta(seconds=5) < lifetime <= timedelta(days=7)

    form = Client().get(body["url"])
    assert form.status_code == 200 and "engineer invited you" in form.content.decode()
    assert "night-shift" in form.content.decode()

    client, answer = _accept(body["url"], username="ada")
    assert answer.status_code == 302 and answer["Location"] == "/"
    ada = get_user_model().objects.get(username="ada")
    assert user_roles(ada) == {Role.ANNOTATOR} and ada.check_password(PASSWORD)
    assert list(ada.annotator_groups.all()) == [group]
    assert client.get("/").wsgi_request.user == ada  # logged in
    invite.refresh_from_db()
    assert invite.used_by == ada and invite.used_at is not None
    listed = client_for("engineer").get("/api/v1/invites/").json()
    assert listed[0]["state"] == "used" and listed[0]["used_by"] == "ada" and "token" not in listed[0]

    # Single use: the link now says so, and a second account cannot be made with it.
    again = Client().get(body["url"])
    assert again.status_code == 410 and "already used" in again.content.decode()
    _, second = _accept(body["url"], username="eve")
    assert second.status_code == 410 and not get_user_model().objects.filter(username="eve").exists()


def test_an_expired_withdrawn_or_unknown_link_answers_a_page_saying_why(client_for, users):
    engineer = client_for("engineer")
    expired = _create(engineer, days=1)
    past = timezone.now() - timedelta(days=3)
    Invite.objects.filter(pk=expired["id"]).update(created_at=past, expires_at=past + timedelta(days=1))
    page = Client().get(expired["url"])
    assert page.status_code == 410
    text = page.content.decode()
    assert "This invite link expired on" in text and "Ask whoever invited you for a new one" in text
    assert 'href="/login/"' in text  # a way on
    _, post = _accept(expired["url"])
    assert post.status_code == 410 and not get_user_model().objects.filter(username="newbie").exists()

    withdrawn = _create(engineer)
    assert engineer.post(f"/api/v1/invites/{withdrawn['id']}/revoke/").json()["state"] == "revoked"
    page = Client().get(withdrawn["url"])
    assert page.status_code == 410 and "withdrawn" in page.content.decode()

    unknown = Client().get("/invite/not-a-real-token/")
    assert unknown.status_code == 404 and "This invite link is not valid" in unknown.content.decode()


def test_the_form_checks_the_name_and_password_as_the_users_api_does(client_for, users):
    url = _create(client_for("engineer"))["url"]
    cases = [
        ({"username": "annotator"}, "already exists"),  # taken (any letter case is checked)
        ({"username": "ANNOTATOR"}, "already exists"),
        ({"username": "bad name!"}, "Enter a valid username"),
        ({"password": "short"}, "too short"),
        ({"again": "something-else-42"}, "The two passwords differ."),
    ]
    for change, message in cases:
        _, page = _accept(url, **change)
        assert page.status_code == 200 and message in page.content.decode(), change
    assert Invite.objects.get().used_at is None and get_user_model().objects.count() == len(users)


def test_one_link_makes_one_account_even_when_two_people_use_it(client_for, users):
    token = _create(client_for("engineer"))["token"]
    services.invite_accept(token=token, username="first", password=PASSWORD)
    with pytest.raises(services.InviteUnusable, match="already used"):
        services.invite_accept(token=token, username="second", password=PASSWORD)
    assert not get_user_model().objects.filter(username="second").exists()


def test_who_may_create_and_withdraw_invites(client_for, users):
    for role in ("annotator", "reviewer"):
        assert client_for(role).post("/api/v1/invites/", {}, format="json").status_code == 403
        assert client_for(role).get("/api/v1/invites/").status_code == 403
    assert client_for(None).post("/api/v1/invites/", {}, format="json").status_code == 401
    assert _create(client_for("admin"))["created_by"] == "admin"

    engineer = client_for("engineer")
    used = _create(engineer)
    services.invite_accept(token=used["token"], username="taken", password=PASSWORD)
    conflict = engineer.post(f"/api/v1/invites/{used['id']}/revoke/")
    assert conflict.status_code == 409 and "deactivate that account instead" in conflict.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"days": 0}, "days", "greater than or equal to 0.01"),
        ({"days": 31}, "days", "less than or equal to 30"),
        ({"group": "no-such-group"}, "group", "does not exist"),
        ({"note": "x" * 201}, "note", "no more than 200"),
        ({"role": "engineer"}, "role", "Unknown field"),
    ],
)
def test_bad_invites_are_400_naming_the_field(client_for, users, body, field, message):
    response = client_for("engineer").post("/api/v1/invites/", body, format="json")
    assert response.status_code == 400
    assert message in " ".join(response.json()[field])


def test_the_people_page_lists_invites_with_a_withdraw_button(client, users):
    services.invite_create(created_by=users["engineer"], note="for Grace")
    client.force_login(users["engineer"])
    page = client.get("/people/").content.decode()
    section = page[page.index('id="invites"') : page.index('id="people"')]
    assert "Create invite link" in section and "for Grace" in section and "pending" in section
    assert 'class="invite-revoke"' in section
