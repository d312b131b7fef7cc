"""Real Celery worker processes for tests, sharing the test database and a broker with the test."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import kombu.pools
from django.conf import settings
from django.db import connection

from config.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
_names = itertools.count(1)


def database_url() -> str:
    """A DATABASE_URL for the test database pytest-django created (must be a file or a server)."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def use_broker(url: str, transport_options: dict) -> None:
    """Point this (test) process's Celery producer at ``url``.

    The write URL is set too: Celery lets a CELERY_BROKER_URL environment variable win over
    ``broker_url``, but not over ``broker_write_url``.
    """
    celery_app.conf.broker_url = url
    celery_app.conf.broker_write_url = url
    celery_app.conf.broker_transport_options = transport_options
    celery_app.pool.force_close_all()
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def filesystem_broker_options(folder: Path) -> dict:
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
    }


class WorkerProcess:
    """``celery -A config worker`` in its own process group, logging to a file."""

    def __init__(self, *, broker_url: str, var_dir: Path, extra_env: dict | None = None, queues: str = "default,gpu"):
        self.name = f"testworker{next(_names)}"
        self.log_path = var_dir / f"{self.name}.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": broker_url,
            "PLATFORM_VAR_DIR": str(var_dir),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "RUN_HEARTBEAT_SECONDS": "0.5",
            "RUN_STALE_AFTER_SECONDS": "3",
            "CELERY_VISIBILITY_TIMEOUT": "5",
            "RUN_REQUEUE_INTERVAL_SECONDS": "1",
            "DATABASE_CONN_MAX_AGE": "0",
            **(extra_env or {}),
        }
        self.queues = queues
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                self.queues,
                "--concurrency",
                "1",
                "--loglevel",
                "INFO",
                "-n",
                f"{self.name}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group: the machine 'disappears' mid-task."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_until(predicate: Callable[[], object], *, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
