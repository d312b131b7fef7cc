"""Schemathesis over the published OpenAPI schema, against a real server, once per role: zero server errors.

Every role gets its own token; schemathesis runs its examples, coverage (boundary and invalid values),
fuzzing and stateful phases (links it infers from the schema) against ``live_server``. The bar is the
``not_a_server_error`` check: any 5xx fails the test, with schemathesis' reproduction in the output.
``FUZZ_MAX_EXAMPLES``, ``FUZZ_MAX_TIME`` (seconds per role), ``FUZZ_SEED`` and ``FUZZ_CHECKS`` shape the run; CI uses
the defaults.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROLE_NAMES
from tests.support.workers import filesystem_broker_options, use_broker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MAX_EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "15")
MAX_TIME = os.environ.get("FUZZ_MAX_TIME", "30")
SEED = os.environ.get("FUZZ_SEED", "14")
CHECKS = os.environ.get("FUZZ_CHECKS", "not_a_server_error")  # e.g. add response_schema_conformance to explore
# The token endpoint is throttled by design and answers 429 under a fuzzer's load: still no 5xx, just noise.
EXCLUDED_PATHS = ["/api/v1/auth/token/"]


@pytest.fixture
def platform_rows(users, settings, tmp_path, own_broker):
    """A small world for the fuzzer to find: a base model and a child version with images of two prompts, a
    collect and an arena campaign (both open), a queued diagnostic run (its message goes to this test's own broker)."""
    from core import services as core_services
    from feedback import services as feedback_services
    from generators import services as generator_services
    from generators.models import ModelVersion
    from tests.support.images import store_images

    settings.MEDIA_ROOT = tmp_path / "media"
    base_model = generator_services.base_model_register(name="tiny", source="org/tiny")
    prompt_set = generator_services.prompt_set_create(name="few", split="eval", prompts=["a red circle", "a cube"])
    base = ModelVersion.objects.get(base_model=base_model)
    tuned = generator_services.model_version_create(base_model=base_model, name="tuned", parent=base)
    prompts = list(prompt_set.prompts.all())
    for offset, version in enumerate((base, tuned)):
        fake_pngs = [(p, seed, b"\x89PNG fake %d %d %d" % (offset, p.pk, seed)) for p in prompts for seed in (0, 1)]
        store_images(version, fake_pngs)
    raters = [users["annotator"], users["reviewer"]]
    for purpose, versions in (("collect", [base]), ("arena", [base, tuned])):
        campaign = feedback_services.campaign_create(
            name=purpose, purpose=purpose, prompt_set=prompt_set, model_versions=versions, annotators=raters
        )
        assert campaign.status == "open", campaign.status  # its images exist: rating endpoints are reachable
    core_services.run_create(kind="diagnostic", config={"steps": 1}, created_by=users["engineer"])


def _schemathesis(schema: Path, base_url: str, token: str, report: Path) -> subprocess.CompletedProcess:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        str(schema),
        "--url",
        base_url,
        "--header",
        f"Authorization: Token {token}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        MAX_EXAMPLES,
        "--max-time",
        MAX_TIME,
        "--seed",
        SEED,
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
    ]
    for path in EXCLUDED_PATHS:
        command += ["--exclude-path", path]
    # Run in the test's folder: schemathesis keeps its cache (.schemathesis/) in the working directory.
    return subprocess.run(
        command, capture_output=True, text=True, timeout=900, env={**os.environ, "NO_COLOR": "1"}, cwd=report.parent
    )


@pytest.fixture
def own_broker(tmp_path):
    """Runs the fuzzer starts go to a broker folder of this test's own (no worker picks them up)."""
    from django.conf import settings

    original = (settings.CELERY_BROKER_URL, dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS))
    use_broker("filesystem://", filesystem_broker_options(tmp_path / "broker"))
    yield
    use_broker(*original)


def test_no_server_error_for_any_role(live_server, users, platform_rows, own_broker, tmp_path):
    from rest_framework.authtoken.models import Token

    schema_file = tmp_path / "schema.json"
    admin_token = Token.objects.create(user=users["admin"]).key
    import requests

    schema = requests.get(
        f"{live_server.url}/api/schema/?format=json", headers={"Authorization": f"Token {admin_token}"}, timeout=60
    )
    assert schema.status_code == 200, schema.text[:300]
    schema_file.write_text(schema.text)

    failures = []
    for role in ROLE_NAMES:
        token = Token.objects.get_or_create(user=users[role])[0].key
        result = _schemathesis(schema_file, live_server.url, token, tmp_path / f"{role}.xml")
        print(f"===== schemathesis as {role}: exit {result.returncode} =====\n{result.stdout[-20000:]}")
        if result.returncode != 0:
            failures.append(f"{role}:\n{result.stdout[-8000:]}\n{result.stderr[-2000:]}")
    assert not failures, "\n\n".join(failures)
