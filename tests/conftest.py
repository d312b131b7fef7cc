"""Fixtures shared by every test: one user per role, API clients for them, run helpers."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from core.roles import Role

# Nothing is ever downloaded from the Hugging Face Hub in tests: hub ids fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest_plugins = ["tests.support.worker_fixtures"]

ROLE_NAMES = ("annotator", "engineer", "reviewer", "admin")


@pytest.fixture(autouse=True, scope="session")
def fast_password_hashing():
    """Tests create many users; the production hasher (PBKDF2) would dominate their run time."""
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True, scope="session")
def no_heartbeat_thread_beats_in_inline_runs():
    """Runs executed inline (``run_execute`` in the test process) sit in the test's open transaction, which the
    heartbeat thread's own connection cannot see on PostgreSQL: its first beat would find no such run and stop a
    run slower than one beat as superseded. In production a run is committed before any worker claims it. The
    heartbeat itself is tested directly (``tests/core/test_run_services.py``) and with real workers, which get
    their own setting."""
    from django.conf import settings

    settings.RUN_HEARTBEAT_SECONDS = 3600.0


@pytest.fixture(scope="session")
def sandbox_reward_experiment(tmp_path_factory) -> tuple[dict, str]:
    """The rewards sandbox acceptance experiment, run once: its report and the directory of the saved model.

    About a minute of CPU; the rewards acceptance test checks the report and the DDPO acceptance test
    fine-tunes against the model.
    """
    from rewards.sandbox_experiment import ExperimentConfig, run_experiment

    model_dir = str(tmp_path_factory.mktemp("sandbox-reward"))
    return run_experiment(ExperimentConfig(), threads=1, output_dir=model_dir), model_dir


def make_user(django_user_model, role: str, username: str | None = None):
    user = django_user_model.objects.create_user(username=username or role, password=f"{role}-pass-123")
    if role == Role.ADMIN:
        user.is_staff = user.is_superuser = True
        user.save()
    elif role in (Role.ANNOTATOR, Role.ENGINEER, Role.REVIEWER):
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def users(db, django_user_model) -> dict:
    """One user per role, plus ``norole``: logged in but in no group."""
    created = {role: make_user(django_user_model, role) for role in ROLE_NAMES}
    created["norole"] = make_user(django_user_model, "norole")
    return created


@pytest.fixture
def client_for(users):
    """``client_for("engineer")`` → an APIClient authenticated by token as that role (None: anonymous)."""

    def build(role: str | None) -> APIClient:
        client = APIClient()
        if role is not None:
            client.force_authenticate(users[role])
        return client

    return build


@pytest.fixture
def engineer_client(client_for) -> APIClient:
    return client_for("engineer")
