"""Every API endpoint × every role (and anonymous) answers the expected status; nothing escapes the matrix."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from core import services
from feedback import handout

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "norole", "annotator", "reviewer", "engineer", "admin")
ANY_USER = {"anonymous": 401, "norole": 200, "annotator": 200, "reviewer": 200, "engineer": 200, "admin": 200}
STAFF_READ = {"anonymous": 401, "norole": 403, "annotator": 403, "reviewer": 200, "engineer": 200, "admin": 200}
STAFF_READ_404 = {**STAFF_READ, "reviewer": 404, "engineer": 404, "admin": 404}
ENGINEER_ONLY = {"anonymous": 401, "norole": 403, "annotator": 403, "reviewer": 403, "engineer": 200, "admin": 200}

# (url name, method, path template, body, expected status per role)
MATRIX = [
    ("api-root", "get", "/api/v1/", None, ANY_USER),
    ("api-me", "get", "/api/v1/me/", None, ANY_USER),
    ("api-users", "get", "/api/v1/users/", None, ENGINEER_ONLY),
    (
        "api-users",
        "post",
        "/api/v1/users/",
        {"username": "matrix-new", "roles": ["annotator"]},
        {**ENGINEER_ONLY, "engineer": 201, "admin": 201},
    ),
    ("api-annotator-groups", "get", "/api/v1/annotator-groups/", None, ENGINEER_ONLY),
    (
        "api-annotator-groups",
        "post",
        "/api/v1/annotator-groups/",
        {"name": "team", "members": ["annotator"]},
        {**ENGINEER_ONLY, "engineer": 201, "admin": 201},
    ),
    (
        "api-annotator-group-members",
        "post",
        "/api/v1/annotator-groups/999/members/",
        {"add": ["annotator"]},
        {**ENGINEER_ONLY, "engineer": 404, "admin": 404},
    ),
    ("api-invites", "get", "/api/v1/invites/", None, ENGINEER_ONLY),
    ("api-invites", "post", "/api/v1/invites/", {"note": "matrix"}, {**ENGINEER_ONLY, "engineer": 201, "admin": 201}),
    (
        "api-invite-revoke",
        "post",
        "/api/v1/invites/999/revoke/",
        None,
        {**ENGINEER_ONLY, "engineer": 404, "admin": 404},
    ),
    ("api-user-deactivate", "post", "/api/v1/users/{other}/deactivate/", None, ENGINEER_ONLY),
    ("api-user-reactivate", "post", "/api/v1/users/{other}/reactivate/", None, ENGINEER_ONLY),
    ("api-run-kinds", "get", "/api/v1/run-kinds/", None, STAFF_READ),
    ("api-runs", "get", "/api/v1/runs/", None, STAFF_READ),
    (
        "api-runs",
        "post",
        "/api/v1/runs/",
        {"kind": "diagnostic", "config": {"steps": 1}},
        {**ENGINEER_ONLY, "engineer": 201, "admin": 201},
    ),
    ("api-run-detail", "get", "/api/v1/runs/{run}/", None, STAFF_READ),
    ("api-run-metrics-csv", "get", "/api/v1/runs/metrics.csv?runs={run}", None, STAFF_READ),
    ("api-run-cancel", "post", "/api/v1/runs/{run}/cancel/", None, {**ENGINEER_ONLY, "engineer": 202, "admin": 202}),
    # Trained weights (adapters, reward models, checkpoints) are engineer material; reviewers see their metadata.
    ("api-artifact-download", "get", "/api/v1/artifacts/{artifact}/download/", None, ENGINEER_ONLY),
    ("api-base-models", "get", "/api/v1/base-models/", None, STAFF_READ),
    (
        "api-base-models",
        "post",
        "/api/v1/base-models/",
        {"name": "sd15", "source": "stable-diffusion-v1-5/stable-diffusion-v1-5"},
        {**ENGINEER_ONLY, "engineer": 201, "admin": 201},
    ),
    ("api-model-versions", "get", "/api/v1/model-versions/", None, STAFF_READ),
    ("api-prompt-sets", "get", "/api/v1/prompt-sets/", None, STAFF_READ),
    (
        "api-prompt-sets",
        "post",
        "/api/v1/prompt-sets/",
        {"name": "cats", "split": "eval", "prompts": ["a cat"]},
        {**ENGINEER_ONLY, "engineer": 201, "admin": 201},
    ),
    ("api-prompt-set-detail", "get", "/api/v1/prompt-sets/{prompt_set}/", None, STAFF_READ),
    ("api-images", "get", "/api/v1/images/", None, STAFF_READ),
    (
        "api-image-file",
        "get",
        "/api/v1/images/{image}/file/",
        None,
        STAFF_READ,  # raters fetch the images they rate by token (api-rating-image), never by id
    ),
    (
        "api-campaigns",
        "get",
        "/api/v1/campaigns/",
        None,
        {"anonymous": 401, "norole": 403, "annotator": 200, "reviewer": 200, "engineer": 200, "admin": 200},
    ),
    (
        "api-campaigns",
        "post",
        "/api/v1/campaigns/",
        {"name": "new", "purpose": "collect", "prompt_set": 1, "model_versions": []},
        {**ENGINEER_ONLY, "engineer": 400, "admin": 400},
    ),
    (
        "api-campaign-preview",
        "post",
        "/api/v1/campaigns/preview/",
        {"purpose": "collect", "prompt_set": 1, "model_versions": []},
        {**ENGINEER_ONLY, "engineer": 400, "admin": 400},
    ),
    ("api-campaign-open", "post", "/api/v1/campaigns/{campaign}/open/", None, ENGINEER_ONLY),
    ("api-campaign-close", "post", "/api/v1/campaigns/{campaign}/close/", None, ENGINEER_ONLY),
    (
        "api-campaign-next",
        "get",
        "/api/v1/campaigns/{campaign}/next/",
        None,
        # Reviewers rate only campaigns they are assigned to (this one lists the annotator alone): 404.
        {"anonymous": 401, "norole": 403, "annotator": 200, "reviewer": 404, "engineer": 403, "admin": 404},
    ),
    (
        "api-rating-image",
        "get",
        "/api/v1/rating-images/{image_token}/left/",
        None,
        # Only the assignment's holder (the annotator); another rater's 404 is the one of a token that does not exist.
        {"anonymous": 401, "norole": 403, "annotator": 200, "reviewer": 404, "engineer": 403, "admin": 404},
    ),
    (
        "api-votes",
        "post",
        "/api/v1/votes/",
        {"assignment": 1, "choice": "sideways"},
        {"anonymous": 401, "norole": 403, "annotator": 400, "reviewer": 400, "engineer": 403, "admin": 400},
    ),
    (
        "api-reports",
        "post",
        "/api/v1/reports/",
        {"assignment": 1, "side": "sideways", "reason": "unsafe"},
        {"anonymous": 401, "norole": 403, "annotator": 400, "reviewer": 400, "engineer": 403, "admin": 400},
    ),
    ("api-image-flags", "get", "/api/v1/image-flags/", None, ENGINEER_ONLY),
    (
        "api-image-flag-review",
        "post",
        "/api/v1/image-flags/999/review/",
        {"decision": "clear"},
        {**ENGINEER_ONLY, "engineer": 404, "admin": 404},
    ),
    (
        "api-campaign-outlook",
        "get",
        "/api/v1/campaigns/{campaign}/outlook/",
        None,
        # Same audience as next/: the campaign's own raters.
        {"anonymous": 401, "norole": 403, "annotator": 200, "reviewer": 404, "engineer": 403, "admin": 404},
    ),
    ("api-campaign-quality", "get", "/api/v1/campaigns/{campaign}/quality/", None, STAFF_READ),
    ("api-aliases", "get", "/api/v1/aliases/", None, STAFF_READ),
    (
        "api-provenance",
        "post",
        "/api/v1/provenance/",
        {},
        {**STAFF_READ, "reviewer": 400, "engineer": 400, "admin": 400},
    ),
    ("api-aliases", "post", "/api/v1/aliases/", {}, {**STAFF_READ, "reviewer": 400, "engineer": 400, "admin": 400}),
    (
        "api-leaderboard",
        "get",
        "/api/v1/leaderboard/?campaign={campaign}",
        None,
        {**STAFF_READ, "reviewer": 400, "engineer": 400, "admin": 400},  # a collect campaign has no leaderboard
    ),
    (
        "api-audit-campaign",
        "post",
        "/api/v1/campaigns/{campaign}/audit-campaign/",
        {},
        {**ENGINEER_ONLY, "engineer": 400, "admin": 400},
    ),
    ("api-datasets", "get", "/api/v1/datasets/", None, STAFF_READ),
    ("api-datasets", "post", "/api/v1/datasets/", {}, {**ENGINEER_ONLY, "engineer": 400, "admin": 400}),
    ("api-reward-models", "post", "/api/v1/reward-models/", {}, {**ENGINEER_ONLY, "engineer": 400, "admin": 400}),
    ("api-dataset-detail", "get", "/api/v1/datasets/999/", None, STAFF_READ_404),
    ("api-reward-models", "get", "/api/v1/reward-models/", None, STAFF_READ),
    ("api-reward-model-detail", "get", "/api/v1/reward-models/999/", None, STAFF_READ_404),
    ("api-campaign-activity", "get", "/api/v1/campaigns/{campaign}/activity/", None, STAFF_READ),
    ("api-campaign-learning-curve", "get", "/api/v1/campaigns/{campaign}/learning-curve/", None, STAFF_READ),
    (
        "api-campaign-gold",
        "post",
        "/api/v1/campaigns/{campaign}/gold/",
        {"pair": 999999, "choice": "a"},
        {**ENGINEER_ONLY, "engineer": 404, "admin": 404},
    ),
    ("api-schema", "get", "/api/schema/", None, ANY_USER),
    ("api-docs", "get", "/api/docs/", None, ANY_USER),
]
# The token endpoint admits everybody by design (it is how scripts log in); tested in test_auth.py.
OPEN_BY_DESIGN = {("api-auth-token", "post")}

# Who may write, per write endpoint (whichever app exposes it). A write endpoint missing here fails
# test_every_write_endpoint_has_a_policy; a matrix row that admits a role outside its policy (or refuses one in
# it) fails test_role_matrix. Creating or changing campaigns, models, prompt sets and runs is for engineers.
ENGINEERS = frozenset({"engineer", "admin"})
RATERS = frozenset({"annotator", "reviewer", "admin"})
PROMOTERS = frozenset({"engineer", "reviewer", "admin"})
WRITE_POLICY = {
    ("api-runs", "post"): ENGINEERS,  # the matrix starts a diagnostic run; reviewers start only generate/evaluate
    ("api-run-cancel", "post"): ENGINEERS,
    ("api-base-models", "post"): ENGINEERS,
    ("api-prompt-sets", "post"): ENGINEERS,
    ("api-campaigns", "post"): ENGINEERS,  # a collect campaign; reviewers may create arena ones (campaign form tests)
    ("api-campaign-gold", "post"): ENGINEERS,
    ("api-campaign-preview", "post"): ENGINEERS,  # creates nothing; the create's rule for the purpose (collect here)
    ("api-campaign-open", "post"): ENGINEERS,
    ("api-campaign-close", "post"): ENGINEERS,
    ("api-audit-campaign", "post"): ENGINEERS,  # creates a collect campaign
    ("api-datasets", "post"): ENGINEERS,
    ("api-reward-models", "post"): ENGINEERS,
    ("api-aliases", "post"): PROMOTERS,
    ("api-provenance", "post"): PROMOTERS,  # reads only (which image is this upload?): staff who see images
    ("api-votes", "post"): RATERS,
    ("api-reports", "post"): RATERS,  # report an image of one's own assignment (content safety)
    ("api-image-flag-review", "post"): ENGINEERS,
    # Accounts: engineers create and (de)activate annotators and reviewers, admins anybody (core/people.py).
    ("api-users", "post"): ENGINEERS,
    ("api-user-deactivate", "post"): ENGINEERS,
    ("api-annotator-groups", "post"): ENGINEERS,
    ("api-annotator-group-members", "post"): ENGINEERS,
    ("api-user-reactivate", "post"): ENGINEERS,
    ("api-invites", "post"): ENGINEERS,  # invite links for new annotators
    ("api-invite-revoke", "post"): ENGINEERS,
}
WRITE_METHODS = ("post", "put", "patch", "delete")


@pytest.fixture
def campaign(image, users):
    from feedback import services as feedback_services

    return feedback_services.campaign_create(
        name="matrix",
        purpose="collect",
        prompt_set=image.prompt.prompt_sets.get(),
        model_versions=[image.model_version],
        annotators=[users["annotator"]],
    )


@pytest.fixture
def image(settings, tmp_path):
    """One stored image (and the sandbox rows it belongs to)."""
    from generators import services as generator_services
    from generators.models import ModelVersion
    from tests.support.images import store_images

    settings.MEDIA_ROOT = tmp_path
    base = generator_services.base_model_register(name="tiny", source="org/tiny")
    prompt_set = generator_services.prompt_set_create(name="few", split="eval", prompts=["a red circle"])
    version = ModelVersion.objects.get(base_model=base)
    store_images(
        version, [(prompt_set.prompts.get(), seed, b"\x89PNG fake bytes %d" % seed) for seed in (0, 1)], native_size=32
    )
    image = version.images.first()
    return image


@pytest.fixture
def artifact(image, users):
    """A stored artifact of a claimed run (stored under the image fixture's media folder)."""
    run = services.run_create(kind="diagnostic", config={}, created_by=users["engineer"])
    claim = services.run_claim(run_id=run.pk, worker="matrix")
    return services.artifact_save(
        run=claim.run, attempt=claim.attempt, name="adapter.safetensors", data=b"weights", kind="adapter"
    )


def _api_endpoints(patterns, prefix: str = "") -> set[tuple[str, str]]:
    """(url name, method) for every API URL and every HTTP method its view implements."""
    endpoints: set[tuple[str, str]] = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            endpoints |= _api_endpoints(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern) and (prefix + str(pattern.pattern)).startswith("api/") and pattern.name:
            view = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
            methods = [m for m in ("get", *WRITE_METHODS) if view is None or hasattr(view, m)]
            endpoints |= {(pattern.name, method) for method in methods}
    return endpoints


def test_every_api_endpoint_is_in_the_matrix():
    covered = {(name, method) for name, method, *_ in MATRIX} | OPEN_BY_DESIGN
    assert _api_endpoints(get_resolver().url_patterns) == covered


def test_every_write_endpoint_has_a_policy():
    writes = {(name, method) for name, method in _api_endpoints(get_resolver().url_patterns) if method != "get"}
    assert writes - OPEN_BY_DESIGN == set(WRITE_POLICY)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "method", "path", "body", "expected"), MATRIX, ids=[f"{m[1]} {m[0]}" for m in MATRIX])
def test_role_matrix(
    client_for, users, image, campaign, artifact, django_user_model, role, name, method, path, body, expected
):
    run = services.run_create(kind="diagnostic", config={"steps": 1}, created_by=users["engineer"])
    client = client_for(None if role == "anonymous" else role)

    image_token = handout.next_assignment(annotator=users["annotator"], campaign=campaign).image_token
    url = path.format(
        run=run.pk,
        image=image.pk,
        prompt_set=image.prompt.prompt_sets.get().pk,
        campaign=campaign.pk,
        image_token=image_token,
        artifact=artifact.pk,
        other=django_user_model.objects.create_user(username="matrix-other").pk,  # an annotator nobody else uses
    )
    if "{other}" in path:
        django_user_model.objects.get(username="matrix-other").groups.add(users["annotator"].groups.get())
    response = getattr(client, method)(url, body, format="json")

    assert response.status_code == expected[role], response.content[:300]
    if method in WRITE_METHODS:
        admitted = response.status_code not in (401, 403)
        assert admitted == (role in WRITE_POLICY[(name, method)]), f"{role} {method} {name}: {response.status_code}"


def test_annotators_can_never_list_runs_or_users(client_for):
    annotator = client_for("annotator")
    assert annotator.get("/api/v1/runs/").status_code == 403
    assert annotator.get("/api/v1/users/").status_code == 403


def test_anonymous_is_told_how_to_authenticate(client_for):
    response = client_for(None).get("/api/v1/runs/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


PAGES = [
    ("/runs/", {"anonymous": 302, "norole": 403, "annotator": 403, "reviewer": 200, "engineer": 200, "admin": 200}),
    (
        "/runs/{run}/",
        {"anonymous": 302, "norole": 403, "annotator": 403, "reviewer": 200, "engineer": 200, "admin": 200},
    ),
    # The run form: reviewers start only generate and evaluate runs (the same rule as POST /api/v1/runs/).
    ("/runs/new/", {"anonymous": 302, "norole": 403, "annotator": 403, "reviewer": 200, "engineer": 200, "admin": 200}),
    (
        "/runs/new/generate/",
        {"anonymous": 302, "norole": 403, "annotator": 403, "reviewer": 200, "engineer": 200, "admin": 200},
    ),
    (
        "/runs/new/finetune/",
        {"anonymous": 302, "norole": 403, "annotator": 403, "reviewer": 403, "engineer": 200, "admin": 200},
    ),
    (
        "/runs/new/diagnostic/?from={run}",
        {"anonymous": 302, "norole": 403, "annotator": 403, "reviewer": 403, "engineer": 200, "admin": 200},
    ),
    # People: accounts and their activity, engineers and admins.
    ("/people/", {"anonymous": 302, "norole": 403, "annotator": 403, "reviewer": 403, "engineer": 200, "admin": 200}),
    (
        "/people/{annotator}/",
        {"anonymous": 302, "norole": 403, "annotator": 403, "reviewer": 403, "engineer": 200, "admin": 200},
    ),
    # The safety review: withheld images and their reports, engineers and admins.
    ("/safety/", {"anonymous": 302, "norole": 403, "annotator": 403, "reviewer": 403, "engineer": 200, "admin": 200}),
    # Campaigns are created by engineers (POST /api/v1/campaigns/); reviewers create arena campaigns only, and their
    # form offers only that purpose (tests/frontend/test_campaign_form_pages.py).
    (
        "/campaigns/new/",
        {"anonymous": 302, "norole": 403, "annotator": 403, "reviewer": 200, "engineer": 200, "admin": 200},
    ),
    # An invite link's page is open to anyone holding the link; an unknown one is 404 (tests/core/test_invites.py).
    ("/invite/not-a-token/", {role: 404 for role in ROLES}),
    ("/", {"anonymous": 302, "norole": 200, "annotator": 200, "reviewer": 302, "engineer": 302, "admin": 302}),
    ("/admin/", {"anonymous": 302, "norole": 302, "annotator": 302, "reviewer": 302, "engineer": 302, "admin": 200}),
    ("/login/", {"anonymous": 200, "norole": 302, "annotator": 302, "reviewer": 302, "engineer": 302, "admin": 302}),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("path", "expected"), PAGES, ids=[p for p, _ in PAGES])
def test_page_matrix(client, users, role, path, expected):
    run = services.run_create(kind="diagnostic", config={"steps": 1}, created_by=users["engineer"])
    if role != "anonymous":
        client.force_login(users[role])

    response = client.get(path.format(run=run.pk, annotator=users["annotator"].pk))

    assert response.status_code == expected[role]
    if response.status_code == 302 and role == "anonymous":
        assert "/login/" in response["Location"]
