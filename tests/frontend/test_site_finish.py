"""The site's finish: error pages with a way back, a favicon, the API root, long names that wrap."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_a_forbidden_page_says_why_and_links_home(client, users):
    client.force_login(users["annotator"])
    response = client.get("/runs/")

    assert response.status_code == 403
    page = response.content.decode()
    assert "does not have the role" in page and 'href="/"' in page
    assert "favicon.svg" in page  # the site's layout, not Django's bare text


def test_a_missing_page_is_404_with_navigation(client, users):
    client.force_login(users["engineer"])
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    page = response.content.decode()
    assert "/no-such-page/" in page and 'href="/"' in page and 'href="/runs/"' in page


def test_the_favicon_is_served(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 301 and response["Location"].endswith("frontend/favicon.svg")


def test_the_api_root_lists_the_collections(client_for):
    response = client_for("annotator").get("/api/v1/")

    assert response.status_code == 200
    links = response.json()
    assert links["runs"].endswith("/api/v1/runs/") and links["campaigns"].endswith("/api/v1/campaigns/")
    assert links["docs"].endswith("/api/docs/")


def test_the_api_root_needs_a_login(client_for):
    assert client_for(None).get("/api/v1/").status_code in (401, 403)


def test_long_names_wrap():
    from pathlib import Path

    css = Path(__file__).resolve().parents[2].joinpath("frontend/static/frontend/site.css").read_text()
    assert "overflow-wrap: anywhere" in css.split("th, td {", 1)[1].split("}", 1)[0]
