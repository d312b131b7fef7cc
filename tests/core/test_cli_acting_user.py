"""Runs started from the command line record who started them (``created_by`` is never silently empty)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from core.models import Run

pytestmark = pytest.mark.django_db


def _start_diagnostic(*args: str) -> Run:
    out = io.StringIO()
    call_command("diagnostic", "--steps", "1", *args, stdout=out, stderr=io.StringIO())
    return Run.objects.get(pk=json.loads(out.getvalue().strip().splitlines()[-1])["run"])


@pytest.fixture(autouse=True)
def no_platform_user(monkeypatch):
    monkeypatch.delenv("PLATFORM_USER", raising=False)
    monkeypatch.setattr("getpass.getuser", lambda: "nobody-on-the-platform")


def test_user_option_is_recorded(users):
    assert _start_diagnostic("--user", "engineer").created_by == users["engineer"]


def test_platform_user_environment_variable_is_recorded(users, monkeypatch):
    monkeypatch.setenv("PLATFORM_USER", "reviewer")

    assert _start_diagnostic().created_by == users["reviewer"]


def test_the_login_name_is_recorded_when_the_platform_has_that_user(users, monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "engineer")

    assert _start_diagnostic().created_by == users["engineer"]


def test_without_any_name_the_first_admin_is_recorded(users):
    assert _start_diagnostic().created_by == users["admin"]


def test_an_unknown_user_is_an_error(users):
    with pytest.raises(CommandError, match="ghost"):
        _start_diagnostic("--user", "ghost")


def test_the_api_shows_the_creator_of_a_cli_run(users, client_for):
    run = _start_diagnostic()

    assert client_for("engineer").get(f"/api/v1/runs/{run.pk}/").json()["created_by"] == "admin"


def test_the_rlhf_cycle_records_the_acting_user_on_what_it_creates(users, monkeypatch):
    """The cycle itself needs a server and a worker (tests/e2e/test_rlhf_cycle.py); here only who it acts as."""
    seen = {}

    def run_cycle(settings, report, tag=""):
        seen["created_by"] = settings.created_by
        return {}

    monkeypatch.setattr("orchestration.management.commands.rlhf_cycle.run_cycle", run_cycle)
    call_command("rlhf_cycle", "--user", "engineer", stdout=io.StringIO(), stderr=io.StringIO())
    assert seen["created_by"] == users["engineer"].pk

    call_command("rlhf_cycle", stdout=io.StringIO(), stderr=io.StringIO())
    assert seen["created_by"] == users["admin"].pk
