"""Fixtures for tests that run real Celery worker processes (registered in tests/conftest.py).

Redis is used only when ``TEST_REDIS_URL`` names one (CI sets it); a test never flushes it. Each test's
broker keys live under a prefix of its own (kombu's ``global_keyprefix``, passed to the workers as
``CELERY_BROKER_KEY_PREFIX``) and only keys under that prefix are deleted afterwards.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.conf import settings

from tests.support.workers import WorkerProcess, filesystem_broker_options, use_broker


def _redis_url() -> str | None:
    """``TEST_REDIS_URL`` when it is set and reachable; None otherwise (a failure with REQUIRE_SERVICES=1)."""
    url = os.environ.get("TEST_REDIS_URL", "")
    if not url:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail("REQUIRE_SERVICES=1 needs TEST_REDIS_URL (a Redis database the tests may write keys to)")
        return None
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception as exc:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis at {url} is required (REQUIRE_SERVICES=1) but unreachable: {exc}")
        return None
    return url


def delete_keys_with_prefix(url: str, prefix: str) -> int:
    """Delete the keys of ``url``'s database that start with ``prefix`` (and no other); returns how many."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    return client.delete(*keys) if keys else 0


@contextmanager
def redis_test_broker(url: str) -> Iterator[dict]:
    """Point this process's Celery producer at ``url`` under a fresh key prefix; delete that prefix's keys after."""
    prefix = f"imagerlhf-test-{uuid.uuid4().hex}:"
    options = {"visibility_timeout": 5, "global_keyprefix": prefix}
    use_broker(url, options)
    try:
        yield {"name": "redis", "url": url, "options": options, "key_prefix": prefix}
    finally:
        delete_keys_with_prefix(url, prefix)


@pytest.fixture(params=["filesystem", "redis"])
def broker(request, tmp_path):
    """A clean broker shared by this test process and the workers it starts: kombu's filesystem
    transport (the embedded default) or Redis (production; only with ``TEST_REDIS_URL``).
    """
    original = (settings.CELERY_BROKER_URL, dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS))
    try:
        if request.param == "filesystem":
            options = filesystem_broker_options(tmp_path / "broker")
            use_broker("filesystem://", options)
            yield {"name": "filesystem", "url": "filesystem://", "options": options, "key_prefix": None}
        else:
            url = _redis_url()
            if url is None:
                pytest.skip("no TEST_REDIS_URL (set it to a Redis database the tests may use)")
            with redis_test_broker(url) as redis_broker:
                yield redis_broker
    finally:
        use_broker(*original)


@pytest.fixture
def start_worker(broker, tmp_path, settings):
    """Start real worker processes on ``broker``; all are stopped (and their logs shown on failure) after the test."""
    settings.MEDIA_ROOT = tmp_path / "media"  # this test's own storage, shared with its workers
    started: list[WorkerProcess] = []
    var_dir = tmp_path / "worker-var"
    var_dir.mkdir(exist_ok=True)
    if broker["name"] == "filesystem":
        # The worker's settings build its broker folders from PLATFORM_VAR_DIR: make them ours.
        (var_dir / "broker").symlink_to(tmp_path / "broker", target_is_directory=True)
    extra_env = {"CELERY_BROKER_KEY_PREFIX": broker["key_prefix"]} if broker["key_prefix"] else {}

    def start(**env: str) -> WorkerProcess:
        """Start one more worker; keyword arguments are extra environment variables (settings) for it."""
        worker = WorkerProcess(broker_url=broker["url"], var_dir=var_dir, extra_env={**extra_env, **env}).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process and worker.process.poll() is None:
            os.killpg(worker.process.pid, signal.SIGCONT)  # a test may have left it frozen (SIGSTOP)
        worker.stop()
    for worker in started:
        print(f"----- log of {worker.name} -----\n{worker.log()[-6000:]}")
