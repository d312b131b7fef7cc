"""Fixtures for tests that run real Celery worker processes (registered in tests/conftest.py)."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from tests.support.workers import WorkerProcess, filesystem_broker_options, use_broker


def _redis_url() -> str | None:
    url = os.environ.get("TEST_REDIS_URL") or os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("redis://"):
        url = "redis://127.0.0.1:6379/15"
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception as exc:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis at {url} is required (REQUIRE_SERVICES=1) but unreachable: {exc}")
        return None
    return url


@pytest.fixture(params=["filesystem", "redis"])
def broker(request, tmp_path):
    """A clean broker shared by this test process and the workers it starts: kombu's filesystem
    transport (the embedded default) or Redis (production).
    """
    original = (settings.CELERY_BROKER_URL, dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS))
    if request.param == "filesystem":
        url, options = "filesystem://", filesystem_broker_options(tmp_path / "broker")
    else:
        url = _redis_url()
        if url is None:
            pytest.skip("Redis is not running (set REQUIRE_SERVICES=1 to make this a failure)")
        import redis

        redis.Redis.from_url(url).flushdb()
        options = {"visibility_timeout": 5}
    use_broker(url, options)
    yield {"name": request.param, "url": url, "options": options}
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

    def start() -> WorkerProcess:
        worker = WorkerProcess(broker_url=broker["url"], var_dir=var_dir).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    for worker in started:
        print(f"----- log of {worker.name} -----\n{worker.log()[-6000:]}")
