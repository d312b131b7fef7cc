"""Browser tests: Playwright driving Debian's Chromium against Django's live_server."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM):
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(
                f"Chromium is required (REQUIRE_SERVICES=1) but {CHROMIUM} is missing: apt-get install -y chromium"
            )
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    # Django's live_server with Playwright's sync API needs this, for the browser tests only (never in settings).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def login(page, live_server):
    def log_in(username: str, password: str) -> None:
        page.goto(f"{live_server.url}/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()

    return log_in


@pytest.fixture
def sandbox_train_images(settings, tmp_path):
    """The bundled sandbox registered and its base version's images of ``sandbox-train`` made (2 seeds, 10 steps,
    inline): ``(version, prompt_set, SettingsRequest(steps=10))``, for campaigns over images that exist."""
    import io

    from django.core.management import call_command

    from core import services as run_services
    from core.run_execution import run_execute
    from generators.models import ModelVersion, PromptSet
    from generators.sampler_settings import SettingsRequest

    settings.MEDIA_ROOT = tmp_path
    call_command("sandbox_setup", stdout=io.StringIO())
    version = ModelVersion.objects.get(base_model__name="sandbox", name="base")
    prompt_set = PromptSet.objects.get(name="sandbox-train")
    run = run_services.run_create(
        kind="generate",
        config={"model_versions": [version.pk], "prompt_set": prompt_set.pk, "images_per_prompt": 2, "steps": 10},
    )
    run_execute(run_id=run.pk, worker="inline")
    return version, prompt_set, SettingsRequest(steps=10)
