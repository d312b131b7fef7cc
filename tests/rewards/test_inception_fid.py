"""Inception FID (``fid_inception``): torch-fidelity's FID InceptionV3 with random weights saved to a local file
(nothing downloaded), checked against torchmetrics' ``FrechetInceptionDistance``, then measured by an ``evaluate``
run on the sandbox and shown on the versions page."""

from __future__ import annotations

import io
import sys
from unittest import mock

import numpy as np
import pytest
import torch
from django.core.management import call_command

from core.models import Run
from core.run_execution import run_execute
from generators import selectors as generator_selectors
from generators import services as generator_services
from generators.models import ModelVersion, PromptSet
from rewards.inception_features import InceptionUnavailable, extractor_class, load_inception
from rewards.metric_selectors import version_metrics
from rewards.metric_stats import frechet_distance
from rewards.models import VersionMetric


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory) -> str:
    """A state dict of torch-fidelity's InceptionV3 architecture with seeded random weights (He-initialised
    convolutions, so that the 2048 pool features are not vanishingly small)."""
    cls = extractor_class()
    module = sys.modules[cls.__module__]
    with (
        mock.patch.object(module, "load_state_dict_from_url", lambda *args, **kwargs: {}),
        mock.patch.object(cls, "load_state_dict", lambda self, state, *args, **kwargs: None),
    ):
        torch.manual_seed(0)
        network = cls("inception-v3-compat", ["2048"])
    for layer in network.modules():
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / "inception-random.pth"
    torch.save(network.state_dict(), path)
    return str(path)


def _images(seed: int, count: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (1, size, size, 3))
    return np.clip(base + rng.integers(-60, 61, (count, size, size, 3)), 0, 255).astype(np.uint8)


def test_features_and_fid_match_torchmetrics_frechet_inception_distance(inception_weights):
    from torchmetrics.image.fid import FrechetInceptionDistance

    generated, reference = _images(1, 4), _images(2, 4)
    model = load_inception(inception_weights)
    assert load_inception(inception_weights) is model  # loaded once per process
    ours_generated, ours_reference = model.image_features(list(generated)), model.image_features(list(reference))
    assert ours_generated.shape == (4, 2048) and ours_generated.dtype == np.float64
    assert ours_generated.std() > 1e-3  # real features, not a vanished signal

    # torch-fidelity's TensorFlow-compatible resize (torchmetrics' antialias=False; its default resizes otherwise).
    fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=inception_weights, antialias=False)
    fid.update(torch.from_numpy(generated).permute(0, 3, 1, 2), real=False)
    fid.update(torch.from_numpy(reference).permute(0, 3, 1, 2), real=True)
    np.testing.assert_allclose(fid.fake_features_sum.numpy(), ours_generated.sum(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fid.real_features_cov_sum.numpy(), ours_reference.T @ ours_reference, rtol=1e-6)
    theirs = float(fid.compute())
    ours = frechet_distance(ours_generated, ours_reference)
    assert ours > 0 and ours == pytest.approx(theirs, rel=1e-4)

    # Images of several sizes in one call: batched by size, in the order given.
    mixed = model.image_features([generated[0], _images(3, 1, size=48)[0], generated[1]])
    np.testing.assert_allclose(mixed[[0, 2]], ours_generated[:2], rtol=1e-4, atol=1e-5)


def test_weights_files_that_cannot_be_loaded_say_why(tmp_path):
    with pytest.raises(InceptionUnavailable, match="does not exist or is unreadable"):
        load_inception(tmp_path / "missing.pth")
    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(InceptionUnavailable, match="not a state dict of the FID InceptionV3"):
        load_inception(other)


@pytest.fixture
def sandbox(settings, tmp_path, users):
    """The sandbox base on 3 eval prompts with a registered reference set (the sandbox's renders, 2 per prompt)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    call_command("sandbox_setup", stdout=io.StringIO())
    base = ModelVersion.objects.get(base_model__name="sandbox", name="base")
    eval_prompts = generator_selectors.prompts_of(PromptSet.objects.get(name="sandbox-eval"))
    prompt_set = generator_services.prompt_set_create(
        name="inception-eval", split="eval", prompts=[p.text for p in eval_prompts[:3]]
    )
    call_command(
        "register_reference_set", "--prompt-set", prompt_set.name, "--sandbox-per-prompt", "2", stdout=io.StringIO()
    )
    return {"base": base, "prompt_set": prompt_set}


def _evaluate(client, sandbox, **overrides):
    config = {
        "model_versions": [sandbox["base"].pk],
        "prompt_set": sandbox["prompt_set"].pk,
        "images_per_prompt": 2,
        "steps": 3,
        "device": "cpu",
        "metrics": ["fid_inception"],
        "bootstrap_resamples": 50,
        **overrides,
    }
    return client.post("/api/v1/runs/", {"kind": "evaluate", "config": config}, format="json")


@pytest.mark.django_db
def test_an_evaluate_run_stores_fid_inception_with_an_interval(
    sandbox, settings, client, users, client_for, inception_weights
):
    settings.INCEPTION_WEIGHTS_PATH = inception_weights
    response = _evaluate(client_for("engineer"), sandbox)
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]
    assert run_execute(run_id=run_id, worker="inline") == "succeeded", Run.objects.get(pk=run_id).error

    row = VersionMetric.objects.get(run_id=run_id, metric="fid_inception")
    reference_set = sandbox["prompt_set"].reference_sets.get()
    assert row.model_version_id == sandbox["base"].pk and row.reference_set_id == reference_set.pk
    assert row.value > 0 and row.low is not None and row.high is not None and row.low <= row.high
    assert row.prompts == 3 and row.items == 6 and row.feature_model == "inception-random.pth"
    result = Run.objects.get(pk=run_id).result["metrics"][str(sandbox["base"].pk)]
    assert result["fid_inception"]["value"] == pytest.approx(row.value)
    assert version_metrics([sandbox["base"].pk], sandbox["prompt_set"])[sandbox["base"].pk].fid_inception.value == (
        pytest.approx(row.value)
    )

    # Shown on the versions page.
    client.force_login(users["reviewer"])
    page = client.get(f"/versions/?prompt_set={sandbox['prompt_set'].pk}").content.decode()
    assert 'data-metric="fid_inception"' in page and "FID (Inception)" in page

    # On the worker, a weights file that is gone fails the run and says which.
    settings.INCEPTION_WEIGHTS_PATH = str(inception_weights) + ".gone"
    again = _evaluate(client_for("engineer"), sandbox).json()["id"]
    assert run_execute(run_id=again, worker="inline") == "failed"
    error = Run.objects.get(pk=again).error
    assert "fid_inception" in error and "does not exist or is unreadable" in error, error


@pytest.mark.django_db
def test_fid_inception_without_the_setting_or_a_reference_set_is_400(sandbox, settings, client_for):
    settings.INCEPTION_WEIGHTS_PATH = ""
    response = _evaluate(client_for("engineer"), sandbox)
    assert response.status_code == 400 and "INCEPTION_WEIGHTS_PATH" in response.json()["config"]["metrics"][0]

    settings.INCEPTION_WEIGHTS_PATH = "/models/inception.pth"  # checked on the worker, not here
    other = generator_services.prompt_set_create(name="other", split="eval", prompts=["a red circle x"])
    response = _evaluate(client_for("engineer"), sandbox, prompt_set=other.pk)
    assert response.status_code == 400 and "fid_inception" in response.json()["config"]["reference_set"][0]
    assert _evaluate(client_for("engineer"), sandbox).status_code == 201


@pytest.mark.django_db
def test_the_gallery_offers_fid_inception_only_with_the_setting(sandbox, settings):
    from frontend.review_views import _measurable

    settings.INCEPTION_WEIGHTS_PATH = ""
    assert _measurable(sandbox["prompt_set"]) == ["clip_score", "fid_clip", "diversity"]
    settings.INCEPTION_WEIGHTS_PATH = "/models/inception.pth"
    assert _measurable(sandbox["prompt_set"]) == ["clip_score", "fid_clip", "fid_inception", "diversity"]
