"""The test suite uses Redis only when TEST_REDIS_URL names one, and never touches keys it did not write."""

from __future__ import annotations

import os
import uuid

import pytest

from config.celery import app as celery_app
from tests.support.worker_fixtures import _redis_url, delete_keys_with_prefix


def test_redis_is_not_used_unless_test_redis_url_is_set(monkeypatch):
    monkeypatch.delenv("TEST_REDIS_URL", raising=False)
    monkeypatch.delenv("REQUIRE_SERVICES", raising=False)
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")

    assert _redis_url() is None


@pytest.fixture
def redis_client():
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("no TEST_REDIS_URL")
    import redis

    return redis.Redis.from_url(url)


@pytest.fixture
def someone_elses_key(redis_client):
    """A key written before the broker fixture starts; it must be there, unchanged, after the broker is gone."""
    name = f"someone-else-{uuid.uuid4().hex}"
    redis_client.set(name, "keep me")
    yield name
    try:
        assert redis_client.get(name) == b"keep me", "the broker fixture touched a key it did not write"
    finally:
        redis_client.delete(name)


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_the_redis_broker_keeps_other_keys_and_writes_under_its_own_prefix(someone_elses_key, broker, redis_client):
    from core.tasks import execute_run

    assert redis_client.get(someone_elses_key) == b"keep me"
    execute_run.apply_async(args=[0], queue="default")

    own = [key.decode() for key in redis_client.scan_iter(match=f"{broker['key_prefix']}*")]
    assert own, "the producer's keys are not under the test's prefix"
    assert celery_app.conf.broker_transport_options["global_keyprefix"] == broker["key_prefix"]


def test_cleanup_deletes_only_keys_under_the_prefix(redis_client):
    prefix = f"imagerlhf-test-{uuid.uuid4().hex}:"
    other = f"other-{uuid.uuid4().hex}"
    redis_client.set(f"{prefix}queue", "x")
    redis_client.set(other, "y")
    try:
        assert delete_keys_with_prefix(os.environ["TEST_REDIS_URL"], prefix) == 1
        assert redis_client.get(other) == b"y"
        assert not list(redis_client.scan_iter(match=f"{prefix}*"))
    finally:
        redis_client.delete(other)
