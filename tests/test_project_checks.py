"""Project-wide checks: migrations complete, OpenAPI schema valid, deploy checks clean in production."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.django_db
def test_models_and_migrations_agree():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_openapi_schema_validates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert "/api/v1/runs/" in (tmp_path / "schema.yml").read_text()


def _manage(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_deploy_checks_are_clean_under_production_variables(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "PLATFORM_VAR_DIR": str(tmp_path),
        "DJANGO_SECRET_KEY": "x" * 20 + "production-secret-key-with-enough-entropy-0123456789",
        "DJANGO_SECURE_HTTPS": "true",
        "DJANGO_ALLOWED_HOSTS": "rlhf.example.com",
        "DATABASE_URL": "postgres://rlhf@db.internal:5432/rlhf",
        "CELERY_BROKER_URL": "redis://redis.internal:6379/0",
    }
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_debug_is_off_unless_asked(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_DEBUG"} | {"PLATFORM_VAR_DIR": str(tmp_path)}
    code = "from django.conf import settings; print(settings.DEBUG)"
    result = _manage(["shell", "-c", code], env)
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr


def test_web_process_does_not_import_torch(tmp_path):
    """Web processes stay light: loading every URL and view must not pull in torch."""
    env = {**os.environ, "PLATFORM_VAR_DIR": str(tmp_path)}
    code = (
        "import sys, django; django.setup(); from django.urls import get_resolver; "
        "get_resolver().url_patterns; import config.wsgi; print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip() == "False", result.stderr


def test_production_without_a_secret_key_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    env |= {"PLATFORM_VAR_DIR": str(tmp_path), "DJANGO_SECURE_HTTPS": "true"}
    result = _manage(["check"], env)
    assert result.returncode != 0
    assert "Set DJANGO_SECRET_KEY" in result.stderr
