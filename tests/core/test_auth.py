"""Token auth for scripts and session login for the browser."""

import pytest

pytestmark = pytest.mark.django_db


def test_token_for_valid_credentials_authenticates_later_requests(client_for, users):
    anonymous = client_for(None)
    response = anonymous.post(
        "/api/v1/auth/token/", {"username": "engineer", "password": "engineer-pass-123"}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]

    anonymous.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    me = anonymous.get("/api/v1/me/")

    assert me.status_code == 200
    assert me.json() == {"id": users["engineer"].pk, "username": "engineer", "roles": ["engineer"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "engineer", "password": "wrong"}, "non_field_errors"),
        ({"username": "engineer"}, "password"),
        ({"username": "engineer", "password": "x", "extra": 1}, "extra"),
    ],
)
def test_token_with_bad_input_is_400_naming_the_problem(client_for, users, body, field):
    response = client_for(None).post("/api/v1/auth/token/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_token_rejects_non_json(client_for, users):
    response = client_for(None).post("/api/v1/auth/token/", "username=engineer", content_type="text/plain")
    assert response.status_code == 415


def test_session_login_page_logs_in_and_out(client, users):
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "reviewer", "password": "reviewer-pass-123"})
    assert response.status_code == 302
    assert client.get("/runs/").status_code == 200
    client.post("/logout/")
    assert client.get("/runs/").status_code == 302


def test_session_api_writes_require_csrf(users):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(users["engineer"])
    response = browser.post("/api/v1/runs/", {"kind": "diagnostic"}, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


@pytest.mark.parametrize("role", ["annotator", "engineer", "reviewer", "admin", "norole"])
def test_token_auth_reads_user_and_roles_in_one_query(role, users, django_assert_num_queries):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from core.authentication import TokenWithRolesAuthentication
    from core.roles import user_roles

    token = Token.objects.create(user=users[role])
    request = APIClient().get("/").wsgi_request
    request.META["HTTP_AUTHORIZATION"] = f"Token {token.key}"
    with django_assert_num_queries(1):
        user, auth = TokenWithRolesAuthentication().authenticate(request)
        roles = user_roles(user)
    assert user.pk == users[role].pk and auth.key == token.key
    expected = {"norole": set(), "admin": {"admin"}}.get(role, {role})
    assert {str(r) for r in roles} == expected


def test_unknown_token_and_inactive_user_are_401(client_for, users):
    from rest_framework.authtoken.models import Token

    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert client.get("/api/v1/me/").status_code == 401
    token = Token.objects.create(user=users["engineer"])
    users["engineer"].is_active = False
    users["engineer"].save()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.get("/api/v1/me/")
    assert response.status_code == 401 and "inactive" in response.json()["detail"]
