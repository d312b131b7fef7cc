"""Invite links in the browser (issue 18, item 4): an engineer creates a link on /people/ for a group; the invitee
opens it in another browser, reads the form's messages for a taken name and differing passwords, makes an annotator
account and lands on their home page; the link then answers that it was used, and the engineer sees who used it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from core.models import AnnotatorGroup
from core.roles import Role, user_roles

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-Passphrase-42"


def test_an_engineer_invites_an_annotator_who_makes_their_account(browser, page, live_server, login, users):
    AnnotatorGroup.objects.create(name="night-shift")
    login("engineer", "engineer-pass-123")
    page.goto(f"{live_server.url}/people/")
    page.select_option("#invite-group", "night-shift")
    page.fill("#invite-note", "for Ada")
    page.get_by_role("button", name="Create invite link").click()
    expect(page.locator("#invite-created")).to_be_visible()
    url = page.locator("#invite-url").input_value()
    assert re.fullmatch(rf"{re.escape(live_server.url)}/invite/[\w-]{{40,}}/", url)
    expect(page.locator("#invite-table tbody tr").first).to_contain_text("pending")

    invitee = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    invitee.goto(url)
    expect(invitee.locator("#invite-accept")).to_contain_text("engineer invited you to the group night-shift")
    invitee.get_by_label("Username").fill("annotator")  # taken
    invitee.get_by_label("Password", exact=True).fill(PASSWORD)
    invitee.get_by_label("Password (again)").fill(PASSWORD + "x")
    invitee.get_by_role("button", name="Create my account").click()
    expect(invitee.locator('[data-field="username"]')).to_contain_text("already exists")
    expect(invitee.locator('[data-field="password_again"]')).to_contain_text("The two passwords differ.")
    DOCS.mkdir(parents=True, exist_ok=True)
    invitee.screenshot(path=str(DOCS / "invite.png"), full_page=True)

    invitee.get_by_label("Username").fill("ada")
    invitee.get_by_label("Password", exact=True).fill(PASSWORD)
    invitee.get_by_label("Password (again)").fill(PASSWORD)
    invitee.get_by_role("button", name="Create my account").click()
    expect(invitee).to_have_url(f"{live_server.url}/")
    expect(invitee.locator("body")).to_contain_text("ada")
    ada = get_user_model().objects.get(username="ada")
    assert user_roles(ada) == {Role.ANNOTATOR} and [g.name for g in ada.annotator_groups.all()] == ["night-shift"]

    invitee.goto(url)  # single use
    expect(invitee.locator("#invite-unusable")).to_contain_text("already used")

    page.reload()
    expect(page.locator("#invite-table tbody tr").first).to_contain_text("used by ada")
    expect(page.locator('#people tr[data-username="ada"]')).to_contain_text("night-shift")
