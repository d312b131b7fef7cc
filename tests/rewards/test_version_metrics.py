"""An ``evaluate`` run with ``metrics`` on the sandbox: a deliberately collapsed child of the base version (every
seed the same image) that a reward model prefers is measured, stored and flagged."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from core.models import Run
from core.run_execution import run_execute
from generators import selectors as generator_selectors
from generators import services as generator_services
from generators.models import GeneratedImage, ModelVersion, PromptSet
from generators.sampler_settings import SettingsRequest
from rewards import services
from rewards.metric_selectors import version_metrics
from rewards.models import RewardModel, VersionMetric
from tests.support.images import store_images

pytestmark = pytest.mark.django_db

SEEDS, STEPS = 3, 3


@pytest.fixture
def versions(settings, tmp_path, users):
    """The sandbox base, a child version of it, 8 sandbox eval prompts with a registered reference set (the
    sandbox's renders, 4 per prompt), and two reward models; no images yet."""
    settings.MEDIA_ROOT = tmp_path / "media"
    call_command("sandbox_setup", stdout=io.StringIO())
    base = ModelVersion.objects.get(base_model__name="sandbox", name="base")
    eval_prompts = generator_selectors.prompts_of(PromptSet.objects.get(name="sandbox-eval"))
    prompt_set = generator_services.prompt_set_create(
        name="metrics-eval", split="eval", prompts=[p.text for p in eval_prompts[:8]]
    )
    child = generator_services.model_version_create(base_model=base.base_model, name="collapsed", parent=base)
    call_command(
        "register_reference_set", "--prompt-set", prompt_set.name, "--sandbox-per-prompt", "4", stdout=io.StringIO()
    )
    return {
        "base": base,
        "child": child,
        "prompt_set": prompt_set,
        "hacked": services.reward_model_register(name="hacked", backbone="sandbox"),
        "honest": services.reward_model_register(name="honest", backbone="sandbox"),
    }


@pytest.fixture
def collapsed(versions, client_for):
    """The base's images (3 seeds, 3 steps); the child's every seed is the base's seed-0 image; the reward model
    ``hacked`` has scored the child's images above the parent's, ``honest`` the other way round."""
    base, child, prompt_set = versions["base"], versions["child"], versions["prompt_set"]
    generate = client_for("engineer").post(
        "/api/v1/runs/",
        {
            "kind": "generate",
            "config": {
                "model_versions": [base.pk],
                "prompt_set": prompt_set.pk,
                "images_per_prompt": SEEDS,
                "steps": STEPS,
                "device": "cpu",
            },
        },
        format="json",
    )
    assert run_execute(run_id=generate.json()["id"], worker="inline") == "succeeded"
    first = {image.prompt_id: image for image in GeneratedImage.objects.filter(model_version=base, seed=0)}
    pngs = {prompt_id: _read(image) for prompt_id, image in first.items()}
    store_images(
        child,
        [(image.prompt, seed, pngs[image.prompt_id]) for image in first.values() for seed in range(SEEDS)],
        settings=SettingsRequest(steps=STEPS),
        native_size=32,
    )
    scores = {i.pk: (1.0 if i.model_version_id == child.pk else 0.0) for i in GeneratedImage.objects.all()}
    services.image_scores_store(reward_model=versions["hacked"], scores=scores)
    services.image_scores_store(reward_model=versions["honest"], scores={pk: 1.0 - v for pk, v in scores.items()})
    return versions


def _read(image: GeneratedImage) -> bytes:
    with image.file.open("rb") as handle:
        return handle.read()


def _evaluate(client, collapsed, **overrides):
    config = {
        "model_versions": [collapsed["child"].pk],
        "prompt_set": collapsed["prompt_set"].pk,
        "images_per_prompt": SEEDS,
        "steps": STEPS,
        "device": "cpu",
        "metrics": ["clip_score", "fid_clip", "diversity", "reward_win_rate"],
        "bootstrap_resamples": 200,
        **overrides,
    }
    return client.post("/api/v1/runs/", {"kind": "evaluate", "config": config}, format="json")


def test_an_evaluate_run_measures_the_collapse_and_flags_the_reward_gain(collapsed, client_for):
    response = _evaluate(client_for("reviewer"), collapsed)  # reviewers may start evaluate runs
    assert response.status_code == 201, response.json()
    run = Run.objects.get(pk=response.json()["id"])
    assert run.config["reference_set"] and sorted(run.config["reward_models"]) == sorted(
        [collapsed["hacked"].pk, collapsed["honest"].pk]
    )

    assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error

    result = Run.objects.get(pk=run.pk).result["metrics"]
    child, base = result[str(collapsed["child"].pk)], result[str(collapsed["base"].pk)]
    prompts = collapsed["prompt_set"].items.count()
    assert child["diversity"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert base["diversity"]["low"] > child["diversity"]["high"]  # diversity dropped, beyond the noise
    assert child["diversity_delta"]["high"] < 0 and child["diversity_delta"]["prompts"] == prompts
    assert child["reward_win_rates"]["hacked"]["value"] == 1.0
    assert child["reward_win_rates"]["honest"]["value"] == 0.0
    assert child["parent"] == collapsed["base"].pk and "parent" in base and base["parent"] is None
    assert "hacked" in child["flag"] and "diversity" in child["flag"] and base["flag"] == ""
    for version in (child, base):
        assert version["clip_score"]["value"] > 0 and version["clip_score"]["prompts"] == prompts
        assert version["clip_score"]["low"] <= version["clip_score"]["value"] <= version["clip_score"]["high"]
        assert version["fid_clip"]["value"] > 0 and version["fid_clip"]["items"] == prompts * SEEDS
    # The collapsed version's images are all seed-0 images of the base: the same CLIP score on average.
    assert child["clip_score"]["value"] == pytest.approx(
        _seed0_clip_mean(collapsed), abs=1e-4
    )  # (a check of the per-image bookkeeping)

    stored = version_metrics([collapsed["child"].pk, collapsed["base"].pk], collapsed["prompt_set"])
    assert stored[collapsed["child"].pk].flagged and not stored[collapsed["base"].pk].flagged
    assert [w.reward_model for w in stored[collapsed["child"].pk].win_rates] == ["hacked", "honest"]
    rows = VersionMetric.objects.filter(run=run)
    assert rows.filter(metric="reward_win_rate").count() == 2 and rows.filter(metric="diversity").count() == 2

    # A rerun of the same attempt's writes replaces its rows, never duplicates them.
    services.version_metrics_store(run=run, rows=[])
    assert not VersionMetric.objects.filter(run=run).exists()


def _seed0_clip_mean(collapsed) -> float:
    import numpy as np
    from PIL import Image

    from generators.sandbox import CLIP_PATH
    from rewards.clip_metrics import ClipFeatureModel, clip_scores

    model = ClipFeatureModel.from_pretrained(CLIP_PATH)
    images = list(GeneratedImage.objects.filter(model_version=collapsed["base"], seed=0).select_related("prompt"))
    pictures = [Image.open(image.file.open("rb")).convert("RGB") for image in images]
    values = clip_scores(model.image_features(pictures), model.text_features([i.prompt.text for i in images]))
    return float(np.mean(values))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"metrics": ["diversity"], "images_per_prompt": 1}, "images_per_prompt"),
        ({"metrics": ["clip_score"], "clip": "openai/clip"}, "clip"),
        ({"metrics": ["sharpness"]}, "metrics"),
        ({"metrics": []}, "reward_model"),
        ({"metrics": ["fid_clip"], "reference_set": 999_999}, "reference_set"),
        ({"metrics": ["reward_win_rate"], "reward_models": [999_999]}, "reward_models"),
        ({"bootstrap_resamples": 1}, "bootstrap_resamples"),
    ],
)
def test_bad_metric_configs_are_400_naming_the_field(versions, client_for, overrides, field):
    response = _evaluate(client_for("engineer"), versions, **overrides)
    assert response.status_code == 400 and field in response.json()["config"], response.json()


def test_fid_needs_a_reference_set_of_the_prompt_set(versions, client_for):
    collapsed = versions
    other = generator_services.prompt_set_create(name="other", split="eval", prompts=["a red circle x"])
    response = _evaluate(client_for("engineer"), collapsed, metrics=["fid_clip"], prompt_set=other.pk)
    assert response.status_code == 400
    assert "No reference set is registered" in response.json()["config"]["reference_set"][0]
    mine = collapsed["prompt_set"].reference_sets.get()
    response = _evaluate(
        client_for("engineer"), collapsed, metrics=["fid_clip"], prompt_set=other.pk, reference_set=mine.pk
    )
    assert response.status_code == 400 and "belongs to prompt set" in response.json()["config"]["reference_set"][0]


def test_the_sandbox_reference_set_holds_renders_of_each_prompt(versions):
    collapsed = versions
    reference_set = collapsed["prompt_set"].reference_sets.get()
    prompts = collapsed["prompt_set"].items.count()
    assert reference_set.images.count() == 4 * prompts
    assert reference_set.images.values("prompt").distinct().count() == prompts
    assert RewardModel.objects.count() == 2
