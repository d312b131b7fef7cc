"""The automatic image metrics against independent implementations: torchmetrics' CLIPScore, scipy's sqrtm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from generators.sandbox import CLIP_PATH
from generators.sandbox.dataset import SandboxDataset
from rewards.clip_metrics import ClipFeatureModel, clip_scores
from rewards.metric_stats import (
    bootstrap,
    clip_score_estimate,
    diversity_estimate,
    frechet_distance,
    frechet_estimate,
    paired_delta_estimate,
    win_rate_estimate,
)


@pytest.fixture(scope="module")
def tiny_random_clip(tmp_path_factory):
    """A randomly initialised tiny CLIP saved to disk with the sandbox's tokenizer (nothing from a hub)."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    folder = tmp_path_factory.mktemp("random-clip")
    config = CLIPConfig(
        text_config={
            "vocab_size": 568,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "bos_token_id": 566,
            "eos_token_id": 567,
            "pad_token_id": 567,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor.from_pretrained(CLIP_PATH).save_pretrained(folder)
    return folder


def _torchmetrics_clip_score(folder, images: np.ndarray, captions: list[str]) -> float:
    """torchmetrics' CLIPScore on the same folder. torchmetrics 1.9 expects transformers 4's ``get_*_features``
    (a tensor; transformers 5 returns an output whose ``pooler_output`` is that tensor): the subclass below
    answers the tensor and changes nothing else."""
    from torchmetrics.multimodal.clip_score import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    class Transformers4Clip(CLIPModel):
        def get_image_features(self, *args, **kwargs):
            return super().get_image_features(*args, **kwargs).pooler_output

        def get_text_features(self, *args, **kwargs):
            return super().get_text_features(*args, **kwargs).pooler_output

    metric = CLIPScore(
        model_name_or_path=lambda: (Transformers4Clip.from_pretrained(folder), CLIPProcessor.from_pretrained(folder))
    )
    metric.update(torch.from_numpy(images).permute(0, 3, 1, 2), captions)
    return float(metric.compute())


@pytest.mark.parametrize("which", ["random", "sandbox"])
def test_clip_score_matches_torchmetrics_clipscore(which, tiny_random_clip):
    folder = tiny_random_clip if which == "random" else CLIP_PATH
    samples = [SandboxDataset(12, seed=3)[i] for i in range(12)]
    images = np.stack([s.image for s in samples])
    captions = [s.caption for s in samples]
    captions[5] = "a green circle"  # one caption that does not match its image

    model = ClipFeatureModel.from_pretrained(folder, batch_size=5)  # batches must not change the result
    per_image = clip_scores(model.image_features([Image.fromarray(a) for a in images]), model.text_features(captions))
    ours = clip_score_estimate({k: [v] for k, v in enumerate(per_image)}).value

    assert ours > 1.0  # a clamped 0 on both sides would prove nothing
    assert ours == pytest.approx(_torchmetrics_clip_score(folder, images, captions), abs=1e-4)
    # Each image alone, where torchmetrics' clamp applies to that image.
    for k in (0, 5):
        alone = _torchmetrics_clip_score(folder, images[k : k + 1], captions[k : k + 1])
        assert max(per_image[k], 0.0) == pytest.approx(alone, abs=1e-4)


def _scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy.linalg.sqrtm (the pytorch-fid way), as an independent reference."""
    from scipy import linalg

    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


def test_frechet_distance_matches_scipy_sqrtm_on_fixed_features():
    rng = np.random.default_rng(7)
    mixing = rng.normal(size=(24, 24))
    a = rng.normal(size=(300, 24)) @ mixing * 0.3
    b = rng.normal(size=(200, 24)) @ (mixing + 0.2 * rng.normal(size=(24, 24))) * 0.3 + 0.5
    assert frechet_distance(a, b) == pytest.approx(_scipy_frechet(a, b), abs=1e-4)
    assert frechet_distance(a, b) > 1.0
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Symmetric, and a shift of the mean adds its squared length.
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), abs=1e-6)
    assert frechet_distance(a + 2.0, a) == pytest.approx(24 * 4.0, abs=1e-6)
    with pytest.raises(ValueError, match="two feature vectors"):
        frechet_distance(a[:1], b)


def test_frechet_distance_with_fewer_samples_than_dimensions_stays_finite():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(10, 64)), rng.normal(size=(12, 64))
    value = frechet_distance(a, b)
    assert np.isfinite(value) and value == pytest.approx(_scipy_frechet(a, b), abs=1e-3)


def test_frechet_estimate_has_an_interval_around_its_value():
    rng = np.random.default_rng(2)
    groups = {p: rng.normal(size=(4, 8)) + 1.0 for p in range(20)}
    reference = rng.normal(size=(80, 8))
    estimate = frechet_estimate(groups, reference, resamples=200)
    assert estimate.n == 20 and estimate.items == 80
    assert estimate.low < estimate.high and estimate.value > 4.0


def test_diversity_drops_when_every_seed_gives_the_same_image():
    model = ClipFeatureModel.from_pretrained(CLIP_PATH)
    data = SandboxDataset(64, seed=11)
    by_caption: dict[str, list[Image.Image]] = {}
    for i in range(64):
        sample = data[i]
        by_caption.setdefault(f"a {sample.colour} {sample.shape}", []).append(Image.fromarray(sample.image))
    varied = {c: model.image_features(images) for c, images in by_caption.items() if len(images) >= 2}
    collapsed = {
        c: model.image_features([images[0]] * len(images)) for c, images in by_caption.items() if len(images) >= 2
    }

    healthy, mode_collapse = diversity_estimate(varied, resamples=200), diversity_estimate(collapsed, resamples=200)
    assert healthy.n == mode_collapse.n >= 5
    assert mode_collapse.value == pytest.approx(0.0, abs=1e-6)
    assert healthy.low > mode_collapse.high  # a clear drop, not within the noise
    per_prompt = paired_delta_estimate(
        {c: 0.0 for c in collapsed}, {c: 1.0 for c in varied}, resamples=50
    )  # the paired delta's sign
    assert per_prompt.value == -1.0


def test_win_rate_counts_ties_half_and_resamples_prompts():
    pairs = {0: [(2.0, 1.0), (1.0, 1.0)], 1: [(0.0, 1.0)], 2: [(3.0, 0.0), (3.0, 0.0)]}
    estimate = win_rate_estimate(pairs, resamples=300)
    assert estimate.value == pytest.approx((1 + 0.5 + 0 + 1 + 1) / 5)
    assert estimate.n == 3 and estimate.items == 5 and 0.0 <= estimate.low <= estimate.value <= estimate.high <= 1.0


def test_bootstrap_is_seeded_and_needs_two_groups():
    values = list(np.linspace(0, 1, 30))
    assert bootstrap(values, np.mean, seed=3) == bootstrap(values, np.mean, seed=3)
    assert bootstrap(values[:1], np.mean) == (None, None)
    low, high = bootstrap(values, np.mean, resamples=2000)
    assert low < 0.5 < high and high - low < 0.3
