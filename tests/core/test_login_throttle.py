"""Brute force: failed logins are counted per account and per client address, in the database, across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
WRONG = "not-the-password"
MESSAGE = "Too many failed login attempts: try again in 15 minutes."


def _login(client, path: str, username: str, password: str, address: str = "127.0.0.1"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address)


def _token(client, username: str, password: str, address: str):
    body = {"username": username, "password": password}
    return client.post("/api/v1/auth/token/", body, content_type="application/json", REMOTE_ADDR=address)


def _logged_in(client) -> bool:
    return client.get("/runs/").status_code == 200


@pytest.mark.django_db
def test_sixty_wrong_passwords_then_the_right_one_is_refused_on_the_login_page(client, users):
    answers = [_login(client, "/login/", "reviewer", WRONG).status_code for _ in range(60)]
    limit = settings.AXES_FAILURE_LIMIT
    assert answers == [200] * (limit - 1) + [429] * (61 - limit)  # the form again, with its error, then locked

    response = _login(client, "/login/", "reviewer", "reviewer-pass-123")

    assert response.status_code == 429
    assert int(response["Retry-After"]) == 15 * 60
    page = response.content.decode()
    assert MESSAGE in page and 'name="password"' in page  # the login form, saying why
    assert not _logged_in(client)


@pytest.mark.django_db
def test_sixty_wrong_passwords_then_the_right_one_is_refused_on_the_admin_login(client, users):
    for _ in range(60):
        _login(client, "/admin/login/", "admin", WRONG)

    response = _login(client, "/admin/login/", "admin", "admin-pass-123")

    assert response.status_code == 429 and MESSAGE in response.content.decode()
    assert client.get("/admin/").status_code == 302  # still not logged in


@pytest.mark.django_db
def test_an_account_is_locked_whatever_address_the_guesses_come_from(client, users):
    """Per account: 60 guesses from 60 addresses (each under the per-address throttle) lock the account."""
    for i in range(60):
        assert _token(client, "engineer", WRONG, f"10.0.{i}.1").status_code in (400, 429)

    response = _token(client, "engineer", "engineer-pass-123", "10.9.9.9")

    assert response.status_code == 429
    assert response.json() == {"detail": MESSAGE} and int(response["Retry-After"]) == 15 * 60
    assert _login(client, "/login/", "engineer", "engineer-pass-123", "10.9.9.8").status_code == 429


@pytest.mark.django_db
def test_an_address_is_locked_whatever_accounts_it_guesses(client, users):
    """Per address: guessing many accounts from one address locks that address, not the accounts."""
    for i in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "/login/", f"someone{i}", WRONG, "10.1.1.1")

    assert _login(client, "/login/", "reviewer", "reviewer-pass-123", "10.1.1.1").status_code == 429
    assert _token(client, "reviewer", "reviewer-pass-123", "10.1.1.1").status_code == 429
    assert _login(client, "/login/", "reviewer", "reviewer-pass-123", "10.2.2.2").status_code == 302


@pytest.mark.django_db
def test_failures_below_the_limit_do_not_lock_and_api_tokens_keep_working(client, users):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=users["engineer"])
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, "/login/", "annotator", WRONG)
    assert _login(client, "/login/", "annotator", "annotator-pass-123").status_code == 302

    for _ in range(60):
        _login(client, "/login/", "engineer", WRONG, "10.3.3.3")
    # A locked account's existing token still authenticates: the lockout guards password logins only.
    assert client.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {token.key}").status_code == 200


def test_a_forwarded_for_header_does_not_change_the_client_address_unless_proxies_are_trusted(rf, settings):
    from core.login_throttle import client_address

    request = rf.post("/login/", REMOTE_ADDR="10.5.5.5", HTTP_X_FORWARDED_FOR="1.2.3.4, 10.6.6.6")
    assert client_address(request) == "10.5.5.5"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert client_address(request) == "10.6.6.6"  # the address the one trusted proxy saw


ANOTHER_PROCESS = """
import json, sys
import django
django.setup()
from django.test.utils import setup_test_environment
setup_test_environment()
from django.test import Client
client = Client()
logins = [
    client.post("/login/", {"username": "reviewer", "password": "x"}).status_code for _ in range(int(sys.argv[1]))
]
tokens = [
    client.post("/api/v1/auth/token/", {"username": "x"}, content_type="application/json").status_code
    for _ in range(int(sys.argv[2]))
]
print(json.dumps({"logins": logins, "tokens": tokens}))
"""


@pytest.fixture
def shared_cache_cleared():
    """The database cache's table is not flushed between transactional tests: leave no throttle counts behind."""
    from django.core.cache import cache

    cache.clear()  # nor find any that an earlier test left
    yield
    cache.clear()


@pytest.mark.django_db(transaction=True)
def test_counts_are_shared_between_processes(client, users, shared_cache_cleared):
    """Another process (another gunicorn worker) makes the failures and spends the token endpoint's rate; this
    one sees both: the counts live in the database and the shared cache, not in process memory."""
    from axes.models import AccessAttempt

    from tests.support.workers import database_url

    limit, rate = settings.AXES_FAILURE_LIMIT, 30
    env = {**os.environ, "DATABASE_URL": database_url(), "DATABASE_CONN_MAX_AGE": "0"}
    env.pop("CACHE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", ANOTHER_PROCESS, str(limit), str(rate)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    other = json.loads(done.stdout.strip().splitlines()[-1])
    assert other["logins"][-1] == 429 and set(other["tokens"]) == {400}  # its own view: locked, not yet throttled

    assert sum(AccessAttempt.objects.values_list("failures_since_start", flat=True)) == limit
    assert _login(client, "/login/", "reviewer", "reviewer-pass-123").status_code == 429
    throttled = _token(client, "engineer", "engineer-pass-123", "127.0.0.1")
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0


def test_the_cache_is_the_database_unless_a_cache_url_is_given():
    """The embedded default shares counts through the database; CACHE_URL switches to Redis."""
    script = "import json, django; django.setup(); from django.conf import settings; print(json.dumps(settings.CACHES))"
    caches = {}
    for name, extra in (("default", {}), ("redis", {"CACHE_URL": "redis://127.0.0.1:6379/7"})):
        env = {k: v for k, v in os.environ.items() if k != "CACHE_URL"} | extra
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
        )
        caches[name] = json.loads(done.stdout.strip().splitlines()[-1])["default"]
    assert caches["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
    assert caches["redis"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert caches["redis"]["LOCATION"] == "redis://127.0.0.1:6379/7"
