"""Review pages: versions and lineage, the gallery, a version's reward scores (rows built directly, no models)."""

from __future__ import annotations

import html
import io
import json
import re

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import include, path
from PIL import Image

from config import urls as project_urls
from core.models import Artifact, Run
from feedback.models import Campaign
from finetune.models import FineTune
from generators import services as generator_services
from generators.models import ModelVersion, Prompt
from generators.sampler_settings import SettingsRequest
from rewards import score_selectors
from rewards import services as reward_services
from rewards.models import PreferenceDataset
from rewards.score_selectors import histogram, mean_interval
from tests.support.images import store_images

# The review URLs, whether or not frontend.urls includes them yet (the project's own patterns come after).
urlpatterns = [path("", include("frontend.review_urls")), *project_urls.urlpatterns]
pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db]

T_975_DF2, T_975_DF3 = 4.302652729911275, 3.182446305284263  # Student-t 97.5% quantiles (tables)


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def world(users, settings, tmp_path):
    """sandbox-test: base → tuned-1 (champion, DDPO against rm-1) → tuned-2; base → tuned-1b (oracle).

    Eval prompts P1..P3. Images: base seed 0 of each prompt; tuned-1 seeds 0 and 1 of P1, seed 0 of P2, P3.
    rm-1 scores: tuned-1 P1 = 1, 3; P2 = 5; P3 = 0 · base P1 = 1; P2 = 2; P3 = 1.
    """
    settings.MEDIA_ROOT = str(tmp_path / "media")
    engineer = users["engineer"]
    base_model = generator_services.base_model_register(name="sandbox-test", source="org/x", created_by=engineer)
    base = base_model.versions.get(name="base")
    prompt_set = generator_services.prompt_set_create(
        name="sandbox-eval",
        split="eval",
        prompts=[
            {"text": "a red circle", "tags": ["red", "circle"]},
            {"text": "a blue square", "tags": ["blue", "square"]},
            {"text": "a small red square", "tags": ["red", "square", "small"]},
        ],
    )
    p1, p2, p3 = (Prompt.objects.get(text=t) for t in ("a red circle", "a blue square", "a small red square"))
    campaign = Campaign.objects.create(name="votes-round-1", purpose="collect", prompt_set=prompt_set)
    dataset = PreferenceDataset.objects.create(
        name="run-1-votes", source="campaigns", file="datasets/x.parquet", sha256="0" * 64, size=1, rows=1
    )
    dataset.campaigns.set([campaign])
    reward_run = Run.objects.create(kind="reward_train", created_by=engineer)
    rm = reward_services.reward_model_register(
        name="rm-1", backbone="sandbox", dataset=dataset, training_run=reward_run
    )
    tune_run = Run.objects.create(kind="finetune", created_by=engineer)
    tuned1 = ModelVersion.objects.create(
        base_model=base_model, name="tuned-1", parent=base, produced_by_run=tune_run, created_by=engineer
    )
    FineTune.objects.create(
        run=tune_run,
        parent=base,
        version=tuned1,
        reward_model=rm,
        summary={
            "eval_reward_before": 0.25,
            "eval_reward_after": 0.75,
            "eval_gold_reward_before": 0.5,
            "eval_gold_reward_after": 0.375,
            "epochs": 4,
        },
    )
    grid_name = default_storage.save("artifacts/eval_grid.png", ContentFile(_png((9, 9, 9))))
    Artifact.objects.create(
        run=tune_run,
        kind="image",
        name="eval_grid.png",
        file=grid_name,
        sha256="1" * 64,
        size=1,
        metadata={"prompts": ["a red circle"]},
    )
    tuned2 = ModelVersion.objects.create(base_model=base_model, name="tuned-2", parent=tuned1)
    oracle_run = Run.objects.create(kind="finetune", created_by=engineer)
    tuned1b = ModelVersion.objects.create(
        base_model=base_model, name="tuned-1b", parent=base, produced_by_run=oracle_run
    )
    FineTune.objects.create(run=oracle_run, parent=base, version=tuned1b, oracle="sandbox:redness")
    generator_services.model_alias_set(name="champion", version=tuned1, updated_by=engineer)

    def store(version, items):
        store_images(version, [(prompt, seed, _png(colour)) for prompt, seed, colour in items], native_size=32)

    store(base, [(p1, 0, (1, 0, 0)), (p2, 0, (2, 0, 0)), (p3, 0, (3, 0, 0))])
    store(tuned1, [(p1, 0, (4, 0, 0)), (p1, 1, (5, 0, 0)), (p2, 0, (6, 0, 0)), (p3, 0, (7, 0, 0))])

    def image(version, prompt, seed):
        return version.images.get(prompt=prompt, seed=seed).pk

    reward_services.image_scores_store(
        reward_model=rm,
        scores={
            image(tuned1, p1, 0): 1.0,
            image(tuned1, p1, 1): 3.0,
            image(tuned1, p2, 0): 5.0,
            image(tuned1, p3, 0): 0.0,
            image(base, p1, 0): 1.0,
            image(base, p2, 0): 2.0,
            image(base, p3, 0): 1.0,
        },
    )
    return {
        "base": base,
        "tuned1": tuned1,
        "tuned2": tuned2,
        "tuned1b": tuned1b,
        "rm": rm,
        "prompt_set": prompt_set,
        "campaign": campaign,
        "tune_run": tune_run,
        "reward_run": reward_run,
        "prompts": (p1, p2, p3),
    }


def _get(client, user, url: str) -> str:
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def _run_config(page: str, button_id: str) -> dict:
    match = re.search(rf'id="{button_id}"[^>]*data-run-config=\'([^\']*)\'', page, re.S)
    assert match, f"no #{button_id} button"
    return json.loads(html.unescape(match.group(1)))


# ------------------------------------------------------------------------------------------------- access
@pytest.mark.parametrize(
    "url",
    ["/versions/", "/versions/{v}/", "/versions/{v}/rewards/", "/versions/{v}/eval-grid.png", "/gallery/"],
)
def test_review_pages_are_for_engineers_and_reviewers(client, users, world, url):
    url = url.format(v=world["tuned1"].pk)
    assert client.get(url).status_code == 302
    assert client.get(url)["Location"].startswith("/login/")
    for role, status in (("annotator", 403), ("norole", 403), ("reviewer", 200), ("engineer", 200)):
        client.force_login(users[role])
        assert client.get(url).status_code == status, role


# ------------------------------------------------------------------------------------------------- versions
def test_versions_page_shows_the_lineage_tree_with_provenance(client, users, world):
    page = _get(client, users["reviewer"], "/versions/")
    rows = re.findall(r'<tr data-version="(\d+)" data-depth="(\d+)">', page)
    expected = [("base", 0), ("tuned1", 1), ("tuned2", 2), ("tuned1b", 1)]  # base to newest, children indented
    assert rows == [(str(world[key].pk), str(depth)) for key, depth in expected]
    tuned1_row = page.split(f'data-version="{world["tuned1"].pk}"')[1].split("</tr>")[0]
    assert '<span class="alias">champion</span>' in tuned1_row
    assert f'href="/runs/{world["tune_run"].pk}/"' in tuned1_row
    assert "rm-1" in tuned1_row and f'href="/runs/{world["reward_run"].pk}/"' in tuned1_row
    assert f'href="/campaigns/{world["campaign"].pk}/">votes-round-1</a>' in tuned1_row
    assert "engineer" in tuned1_row
    assert "sandbox:redness" in page.split(f'data-version="{world["tuned1b"].pk}"')[1].split("</tr>")[0]


def test_version_detail_shows_ancestry_children_summary_and_grid(client, users, world):
    tuned1, tuned2 = world["tuned1"], world["tuned2"]
    page = _get(client, users["reviewer"], f"/versions/{tuned2.pk}/")
    chain = re.search(r'<ol class="ancestry">(.*?)</ol>', page, re.S).group(1)
    assert re.findall(r">([\w-]+)</(?:a|strong)>", chain) == ["base", "tuned-1", "tuned-2"]
    assert "No version was fine-tuned from this one yet." in page

    page = _get(client, users["engineer"], f"/versions/{tuned1.pk}/")
    children = page.split('<h2 class="card-title">Children</h2>')[1]
    assert f'href="/versions/{tuned2.pk}/">tuned-2</a>' in children
    assert "0.2500" in page and "0.7500" in page and "+0.5000" in page  # eval reward before / after / change
    assert "0.3750" in page and "-0.1250" in page  # gold got worse
    assert f'src="/versions/{tuned1.pk}/eval-grid.png"' in page
    assert f"/gallery/?versions={world['base'].pk},{tuned1.pk}" in page

    response = client.get(f"/versions/{tuned1.pk}/eval-grid.png")
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == _png((9, 9, 9))
    assert client.get(f"/versions/{tuned2.pk}/eval-grid.png").status_code == 404


# ------------------------------------------------------------------------------------------------- gallery
def test_gallery_grid_shows_images_missing_cells_and_scores(client, users, world):
    base, tuned1, rm = world["base"], world["tuned1"], world["rm"]
    url = f"/gallery/?versions={base.pk},{tuned1.pk}&images_per_prompt=2&reward_model={rm.pk}"
    page = _get(client, users["reviewer"], url)
    body = page.split("<tbody>")[1]
    assert body.count("not generated") == 5  # 3 prompts × 2 versions × 2 seeds = 12 cells, 7 images
    assert body.count('class="gallery-image"') == 7
    assert 'id="missing-count">5</strong>' in page
    first_row = body.split("</tr>")[0]
    assert "a red circle" in first_row
    cells = re.findall(r'<td class="cell[^"]*">(.*?)</td>', first_row, re.S)
    assert ["not generated" in c for c in cells] == [False, True, False, False]  # base s0, base s1, tuned s0, s1
    assert "score <strong>1.0000</strong>" in cells[0] and "score <strong>3.0000</strong>" in cells[3]
    image_id = tuned1.images.get(prompt=world["prompts"][0], seed=1).pk
    assert f'href="/api/v1/images/{image_id}/file/"' in cells[3]
    assert 'alt="a red circle by tuned-1, seed 1"' in cells[3]

    generate = _run_config(page, "generate-missing")
    assert generate == {
        "model_versions": [base.pk, tuned1.pk],
        "prompt_set": world["prompt_set"].pk,
        "images_per_prompt": 2,
    }
    assert _run_config(page, "score-images") == {**generate, "reward_model": rm.pk}
    # What the buttons post is accepted by the runs API for this reviewer (same session, as the page's fetch).
    for kind, config in (("generate", generate), ("evaluate", {**generate, "reward_model": rm.pk})):
        response = client.post("/api/v1/runs/", {"kind": kind, "config": config}, content_type="application/json")
        assert response.status_code == 201, (kind, response.content)


def test_gallery_filters_by_text_and_tag_and_defaults_to_one_seed(client, users, world):
    base, tuned1 = world["base"], world["tuned1"]
    page = _get(client, users["reviewer"], f"/gallery/?versions={base.pk}&versions={tuned1.pk}&q=BLUE")
    body = page.split("<tbody>")[1]
    assert "a blue square" in body and "a red circle" not in body
    assert body.count('class="gallery-image"') == 2 and "not generated" not in body
    assert "generate-missing" not in page and "Every image is there." in page
    assert world["prompt_set"].name in page  # the eval set is chosen by default

    page = _get(client, users["reviewer"], f"/gallery/?versions={base.pk},{tuned1.pk},{world['tuned2'].pk}&tag=red")
    body = page.split("<tbody>")[1]
    assert "a red circle" in body and "a small red square" in body and "a blue square" not in body
    assert body.count("not generated") == 2  # tuned-2 has no images


def test_gallery_asks_for_two_to_four_versions(client, users, world):
    page = _get(client, users["reviewer"], f"/gallery/?versions={world['base'].pk}")
    assert "Choose 2 to 4 versions to compare." in page and "<tbody>" not in page
    ids = ",".join(str(v.pk) for v in ModelVersion.objects.all()) + ",999"
    assert ModelVersion.objects.count() == 4
    page = _get(client, users["reviewer"], f"/gallery/?versions={ids}")
    assert "<tbody>" in page  # the unknown id is ignored: four versions
    page = _get(client, users["reviewer"], f"/gallery/?versions={ids},{2**64},-3")
    assert "<tbody>" in page  # so are ids beyond 64 bits and below 1 (a beyond-64-bit id was a 500)
    ModelVersion.objects.create(base_model=world["base"].base_model, name="fifth", parent=world["base"])
    ids = ",".join(str(v.pk) for v in ModelVersion.objects.all())
    assert "Choose at most 4 versions." in _get(client, users["reviewer"], f"/gallery/?versions={ids}")


# ------------------------------------------------------------------------------------------------- rewards
def test_statistics_helpers_on_a_hand_computed_example():
    summary = mean_interval([1.0, 3.0, 5.0, 0.0])
    assert summary.mean == pytest.approx(2.25)
    assert summary.std == pytest.approx((14.75 / 3) ** 0.5)
    half = T_975_DF3 * (14.75 / 3) ** 0.5 / 2
    assert (summary.low, summary.high) == (pytest.approx(2.25 - half), pytest.approx(2.25 + half))
    assert mean_interval([2.0]).low is None and mean_interval([]).mean is None
    hist = histogram([[0.0, 1.0, 1.0], [2.0]], bins=4)
    assert hist.edges == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert hist.counts == [[1, 0, 2, 0], [0, 0, 0, 1]]  # the top edge falls in the last bin


def test_version_rewards_page_distribution_and_deltas(client, users, world):
    tuned1, rm = world["tuned1"], world["rm"]
    page = _get(client, users["reviewer"], f"/versions/{tuned1.pk}/rewards/")  # defaults: newest rm, eval set
    distribution = page.split('id="distribution"')[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", distribution.split("<tbody>")[1], re.S)
    cells = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S) for row in rows]
    half = T_975_DF3 * (14.75 / 3) ** 0.5 / 2
    assert cells[0] == [
        "tuned-1",
        "4",
        "3 of 3",
        "2.2500",
        f"{2.25 - half:.4f} to {2.25 + half:.4f}",
        f"{(14.75 / 3) ** 0.5:.4f}",
    ]
    parent_half = T_975_DF2 * (1 / 3) ** 0.5 / 3**0.5
    assert cells[1][:5] == [
        "base (parent)",
        "3",
        "3 of 3",
        "1.3333",
        f"{4 / 3 - parent_half:.4f} to {4 / 3 + parent_half:.4f}",
    ]

    # Per-prompt deltas: P1 = mean(1, 3) - 1 = +1, P2 = 5 - 2 = +3, P3 = 0 - 1 = -1; largest gain first.
    deltas = page.split('id="deltas"')[1].split("</table>")[0]
    assert re.findall(r'<th scope="row">(.*?)</th>', deltas) == ["a blue square", "a red circle", "a small red square"]
    assert re.findall(r'<td class="(?:gain|loss)">(.*?)</td>', deltas) == ["+3.0000", "+1.0000", "-1.0000"]
    assert "2.0000 (2)" in deltas  # P1: mean of the two seeds
    delta_half = T_975_DF2 * 2.0 / 3**0.5  # deltas 3, 1, -1: mean 1, sd 2
    summary = page.split('id="delta-summary"')[1].split("</p>")[0]
    assert "3 prompts" in summary and "+1.0000" in summary
    assert f"{1 - delta_half:.4f} to {1 + delta_half:.4f}" in summary
    assert "not distinguishable from the parent yet" in summary
    assert 'id="missing-scores"' not in page

    chart = json.loads(re.search(r'<script id="histogram-data" type="application/json">(.*?)</script>', page).group(1))
    assert [d["label"] for d in chart["datasets"]] == ["sandbox-test/tuned-1", "sandbox-test/base (parent)"]
    assert [sum(d["data"]) for d in chart["datasets"]] == [4, 3]
    assert "frontend/vendor/chart.umd.min.js" in page and "cdn" not in page.lower()
    assert f'value="{rm.pk}" selected' in page


def test_version_rewards_offers_an_evaluate_run_when_scores_are_missing(client, users, world):
    tuned1, tuned2, rm = world["tuned1"], world["tuned2"], world["rm"]
    page = _get(client, users["reviewer"], f"/versions/{tuned2.pk}/rewards/?reward_model={rm.pk}")
    assert 'id="missing-scores"' in page
    assert "0 of 3 prompts" in page
    config = _run_config(page, "start-evaluate")
    assert config == {
        "reward_model": rm.pk,
        "model_versions": [tuned2.pk, tuned1.pk],
        "prompt_set": world["prompt_set"].pk,
    }
    response = client.post("/api/v1/runs/", {"kind": "evaluate", "config": config}, content_type="application/json")
    assert response.status_code == 201, response.content
    assert "No prompt has scores for both versions yet." in page

    page = _get(client, users["reviewer"], f"/versions/{world['base'].pk}/rewards/")
    assert "base has no parent to compare with." in page and 'id="deltas"' not in page
    assert 'id="missing-scores"' not in page


def test_version_rewards_without_a_reward_model(client, users, db, settings, tmp_path):
    base_model = generator_services.base_model_register(name="lonely", source="org/x")
    page = _get(client, users["engineer"], f"/versions/{base_model.versions.get().pk}/rewards/")
    assert "There is no reward model yet" in page


def test_versions_page_queries_do_not_grow_with_versions(client, users, world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(users["reviewer"])

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/versions/").status_code == 200
        return len(captured)

    before = queries()
    parent = world["tuned2"]
    for k in range(3):
        run = Run.objects.create(kind="finetune")
        child = ModelVersion.objects.create(
            base_model=parent.base_model, name=f"more-{k}", parent=parent, produced_by_run=run
        )
        FineTune.objects.create(run=run, parent=parent, version=child, reward_model=world["rm"])
        generator_services.model_alias_set(name=f"alias-{k}", version=child)
        parent = child
    assert queries() == before


# ------------------------------------------------------------------------------------------------- sampler settings
FIFTY = SettingsRequest(steps=50)


def _store_fifty_step_images(world, version, scores: dict) -> dict:
    """50-step images of ``version`` ({(prompt index, seed): score}), stored after the 20-step ones (newer ids)."""
    prompts = world["prompts"]
    items = [(prompts[p], seed, _png((200, p, seed))) for p, seed in scores]
    store_images(version, items, settings=FIFTY, native_size=32)
    images = {(p, seed): version.images.get(prompt=prompts[p], seed=seed, settings__steps=50) for p, seed in scores}
    reward_services.image_scores_store(
        reward_model=world["rm"], scores={images[key].pk: score for key, score in scores.items()}
    )
    return images


def _gallery_image_ids(page: str) -> list[int]:
    body = page.split("<tbody>")[-1]
    return [int(i) for i in re.findall(r'class="gallery-image" href="/api/v1/images/(\d+)/file/"', body)]


def test_gallery_shows_the_images_of_the_requested_settings_not_the_newest(client, users, world):
    base, tuned1, rm = world["base"], world["tuned1"], world["rm"]
    fifty = _store_fifty_step_images(world, base, {(0, 0): 100.0})
    default_image = base.images.get(prompt=world["prompts"][0], seed=0, settings__steps=20)
    url = f"/gallery/?versions={base.pk},{tuned1.pk}&reward_model={rm.pk}"

    page = _get(client, users["reviewer"], url)

    first_row = page.split("<tbody>")[1].split("</tr>")[0]
    assert _gallery_image_ids(first_row)[0] == default_image.pk and "100.0000" not in page

    page = _get(client, users["reviewer"], url + "&steps=50")
    assert _gallery_image_ids(page) == [fifty[(0, 0)].pk] and "score <strong>100.0000</strong>" in page
    assert _run_config(page, "generate-missing")["steps"] == 50
    assert _run_config(page, "score-images")["steps"] == 50
    client.force_login(users["reviewer"])
    assert client.get(url + "&steps=0").status_code == 400


def test_gallery_of_a_campaign_shows_exactly_the_images_its_pairs_hold(client, users, world):
    from feedback import services as feedback_services

    base, tuned1 = world["base"], world["tuned1"]
    every_prompt = {(p, 0): float(p) for p in range(3)}
    _store_fifty_step_images(world, base, every_prompt)
    _store_fifty_step_images(world, tuned1, every_prompt)
    arena = feedback_services.campaign_create(
        name="fifty-steps",
        purpose="arena",
        prompt_set=world["prompt_set"],
        model_versions=[base, tuned1],
        images_per_prompt=1,
        sampler_settings=FIFTY,
    )
    assert arena.status == "open"

    page = _get(client, users["reviewer"], f"/gallery/?campaign={arena.pk}")

    in_pairs = {i for pair in arena.pairs.values_list("image_a", "image_b") for i in pair}
    assert len(in_pairs) == 6 and set(_gallery_image_ids(page)) == in_pairs


def test_version_rewards_count_only_the_images_of_the_requested_settings(client, users, world):
    tuned1 = world["tuned1"]
    _store_fifty_step_images(world, tuned1, {(0, 0): 100.0})

    page = _get(client, users["reviewer"], f"/versions/{tuned1.pk}/rewards/")
    distribution = page.split('id="distribution"')[1].split("</table>")[0]
    first_row = re.findall(r"<tr>(.*?)</tr>", distribution.split("<tbody>")[1], re.S)[0]
    assert re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", first_row, re.S)[:4] == ["tuned-1", "4", "3 of 3", "2.2500"]
    comparison = score_selectors.reward_comparison(tuned1, world["rm"], world["prompt_set"])
    assert comparison.version.summary.n == 4 and comparison.version.summary.mean == pytest.approx(2.25)

    fifty = score_selectors.reward_comparison(tuned1, world["rm"], world["prompt_set"], FIFTY)
    assert fifty.version.by_prompt == {world["prompts"][0].pk: [100.0]}
    assert (
        _run_config(
            _get(client, users["reviewer"], f"/versions/{world['tuned2'].pk}/rewards/?steps=50"), "start-evaluate"
        )["steps"]
        == 50
    )
