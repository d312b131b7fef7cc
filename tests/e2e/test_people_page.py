"""People from the browser (issue 18, item 4): an engineer creates an annotator on /people/ with a generated
password, sees them in the table, puts them in a new annotator group, deactivates them; the annotator then cannot
log in, and their token is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_an_engineer_creates_and_deactivates_an_annotator(browser, page, live_server, login, users):
    login("engineer", "engineer-pass-123")
    page.get_by_role("link", name="People").click()
    expect(page).to_have_url(re.compile(r"/people/$"))

    page.fill("#new-username", "engineer")  # taken: the API's 400 is shown under the form
    page.get_by_role("button", name="Create", exact=True).click()
    expect(page.locator("#new-person-errors")).to_contain_text("already exists")
    page.fill("#new-username", "newcomer")
    page.fill("#new-password", "short")
    page.get_by_role("button", name="Create", exact=True).click()
    expect(page.locator("#new-person-errors")).to_contain_text("too short")

    page.fill("#new-username", "newcomer")
    page.fill("#new-password", "")
    page.get_by_role("button", name="Create", exact=True).click()
    created = page.locator("#new-person-created")
    expect(created).to_be_visible()
    password = created.locator("[data-field=password]").inner_text()
    assert len(password) >= 12
    assert get_user_model().objects.get(username="newcomer").groups.get().name == "annotator"

    page.reload()
    page.fill("#group-name", "night-shift")  # a new group, with the newcomer in it
    page.fill("#group-usernames", "newcomer, annotator")
    page.get_by_role("button", name="Add (creates the group if new)").click()
    expect(page.locator('#group-table tr[data-group="night-shift"]')).to_contain_text("annotator, newcomer")
    row = page.locator('#people tr[data-username="newcomer"]')
    expect(row).to_contain_text("annotator")
    expect(row).to_contain_text("night-shift")
    expect(row.locator("[data-field=active]")).to_have_text("yes")
    DOCS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS / "people.png"), full_page=True)

    # the new annotator can log in with the generated password (a fresh browser context)
    other = browser.new_context(viewport={"width": 1280, "height": 900})
    annotator_page = other.new_page()
    token = annotator_page.request.post(
        f"{live_server.url}/api/v1/auth/token/", data={"username": "newcomer", "password": password}
    )
    assert token.ok
    key = token.json()["token"]

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Deactivate").click()
    expect(row.locator("[data-field=active]")).to_have_text("inactive")
    expect(row.get_by_role("button", name="Reactivate")).to_be_visible()
    assert not get_user_model().objects.get(username="newcomer").is_active

    annotator_page.goto(f"{live_server.url}/login/")
    annotator_page.get_by_label("Username").fill("newcomer")
    annotator_page.get_by_label("Password").fill(password)
    annotator_page.get_by_role("button", name="Log in").click()
    annotator_page.wait_for_load_state()
    expect(annotator_page).to_have_url(re.compile(r"/login/"))
    expect(annotator_page.get_by_role("alert")).to_contain_text("didn't match")  # Django tells nobody who is inactive
    refused = annotator_page.request.get(f"{live_server.url}/api/v1/me/", headers={"Authorization": f"Token {key}"})
    assert refused.status == 401
    other.close()
