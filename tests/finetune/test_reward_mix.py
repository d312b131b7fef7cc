"""A fine-tune against a weighted mix of reward models (one per criterion): config validation, the mixed reward
callable (standardised on its first batch, then frozen) and a short run through the platform."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.core.management import call_command

from core.jobs import JobFailed
from core.models import Run
from core.run_execution import run_execute
from core.storage import artifact_local_path
from finetune.executors import _recorded_mix_stats
from finetune.models import FineTune
from finetune.reward import ScoreStats, WeightedRewardMix
from generators.models import ModelVersion, PromptSet
from rewards import services as reward_services
from tests.finetune.ddpo_support import RUN_TINY

# ------------------------------------------------------------------------------------------ the callable


def _constant_reward(values):
    """A reward returning ``values`` for each call in turn (one list per call)."""
    calls = iter(values)

    def reward(prompts, images):
        return next(calls)

    return reward


def test_the_mix_standardises_each_reward_on_its_first_batch_then_freezes_the_statistics():
    big = _constant_reward([[10.0, 20.0, 30.0], [40.0, 20.0, 20.0]])  # mean 20, std 8.165
    small = _constant_reward([[0.1, 0.3, 0.2], [0.3, 0.3, 0.1]])  # mean 0.2, std 0.0816
    seen = []
    mix = WeightedRewardMix([big, small], [2.0, 1.0], on_calibrated=seen.append)

    first = mix(["p"] * 3, [None] * 3)
    second = mix(["p"] * 3, [None] * 3)

    sd_big, sd_small = np.std([10, 20, 30]), np.std([0.1, 0.3, 0.2])
    np.testing.assert_allclose(
        first, 2 * (np.array([10, 20, 30]) - 20) / sd_big + (np.array([0.1, 0.3, 0.2]) - 0.2) / sd_small
    )
    np.testing.assert_allclose(
        second, 2 * (np.array([40, 20, 20]) - 20) / sd_big + (np.array([0.3, 0.3, 0.1]) - 0.2) / sd_small
    )
    assert abs(first.mean()) < 1e-9  # standardised on this very batch
    assert len(seen) == 1 and seen[0][0] == pytest.approx(ScoreStats(20.0, sd_big))


def test_given_statistics_skip_calibration_and_a_constant_first_batch_is_scaled_by_one():
    recorded = WeightedRewardMix(
        [_constant_reward([[3.0, 5.0]])], [0.5], stats=[ScoreStats(4.0, 2.0)], on_calibrated=pytest.fail
    )
    np.testing.assert_allclose(recorded(["p", "q"], [None, None]), [-0.25, 0.25])
    flat = WeightedRewardMix([_constant_reward([[7.0], [9.0]])], [1.0])
    np.testing.assert_allclose(flat(["p"], [None]), [0.0])
    np.testing.assert_allclose(flat(["p"], [None]), [2.0])
    assert flat.stats == [ScoreStats(7.0, 1.0)]


def test_a_failing_or_bad_member_fails_readably_and_bad_mixes_are_refused():
    def broken(prompts, images):
        raise RuntimeError("no GPU")

    with pytest.raises(JobFailed, match="mixed reward 1 .*no GPU"):
        WeightedRewardMix([_constant_reward([[1.0]]), broken], [1.0, 1.0])(["p"], [None])
    with pytest.raises(JobFailed, match="non-finite"):
        WeightedRewardMix([_constant_reward([[float("nan")]])], [1.0])(["p"], [None])
    with pytest.raises(ValueError, match="one weight per reward"):
        WeightedRewardMix([broken], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        WeightedRewardMix([broken], [float("inf")])


# ----------------------------------------------------------------------------------------- the run config


@pytest.fixture
def sandbox(settings, tmp_path, db):
    settings.MEDIA_ROOT = tmp_path / "media"
    call_command("sandbox_setup", stdout=io.StringIO())
    return {
        "version": ModelVersion.objects.get(base_model__name="sandbox", name="base"),
        "train": PromptSet.objects.get(name="sandbox-train"),
        "eval": PromptSet.objects.get(name="sandbox-eval"),
        "rewards": [
            reward_services.reward_model_register(name=name, backbone="sandbox") for name in ("looks", "prompt")
        ],
    }


def _config(sandbox, **overrides) -> dict:
    first, second = sandbox["rewards"]
    return {
        "model_version": sandbox["version"].pk,
        "reward_models": [{"reward_model": first.pk, "weight": 0.7}, {"reward_model": second.pk, "weight": 0.3}],
        "train_prompt_set": sandbox["train"].pk,
        "eval_prompt_set": sandbox["eval"].pk,
        "device": "cpu",
        **RUN_TINY,
        **overrides,
    }


def _entries(sandbox, *weights):
    return [{"reward_model": sandbox["rewards"][i % 2].pk, "weight": w} for i, w in enumerate(weights)]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: {"reward_models": []}, "reward_models"),
        (lambda s: {"reward_models": [{"reward_model": 9_999, "weight": 1.0}]}, "reward_models"),
        (lambda s: {"reward_models": _entries(s, 1.0, 1.0, 1.0)}, "reward_models"),  # the same model twice
        (lambda s: {"reward_models": [{"reward_model": s["rewards"][0].pk, "weight": 1.0}] * 5}, "reward_models"),
        (lambda s: {"reward_models": _entries(s, 0.0)}, "reward_models"),
        (lambda s: {"reward_models": _entries(s, -1.0)}, "reward_models"),
        (lambda s: {"reward_models": _entries(s, 10.5)}, "reward_models"),
        (lambda s: {"reward_models": _entries(s, "heavy")}, "reward_models"),
        (lambda s: {"reward_models": [{"reward_model": s["rewards"][0].pk}]}, "reward_models"),
        (lambda s: {"reward_models": [{"reward_model": s["rewards"][0].pk, "weight": 1, "scale": 2}]}, "reward_models"),
        (lambda s: {"reward_models": {"reward_model": 1, "weight": 1}}, "reward_models"),
        (lambda s: {"reward_model": s["rewards"][0].pk}, "reward_model"),  # a mix and a single model
        (lambda s: {"oracle": "area"}, "reward_model"),  # a mix and an oracle
    ],
)
def test_bad_mixes_are_400_naming_the_field(sandbox, client_for, users, change, field):
    body = {"kind": "finetune", "config": _config(sandbox, **change(sandbox))}
    response = client_for("engineer").post("/api/v1/runs/", body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["config"], response.json()
    assert not Run.objects.exists()


@pytest.mark.slow
def test_a_finetune_against_a_mix_records_it_and_its_statistics(sandbox, client_for, users):
    response = client_for("engineer").post(
        "/api/v1/runs/", {"kind": "finetune", "config": _config(sandbox, name="mixed")}, format="json"
    )
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]

    assert run_execute(run_id=run_id, worker="inline") == "succeeded", Run.objects.get(pk=run_id).error

    run = Run.objects.get(pk=run_id)
    finetune = FineTune.objects.get(run=run)
    mix = finetune.summary["reward_mix"]
    assert [(e["reward_model"], e["weight"]) for e in mix] == [
        (r.pk, w) for r, w in zip(sandbox["rewards"], (0.7, 0.3), strict=True)
    ]
    assert all(e["stats"]["std"] > 0 for e in mix)
    assert finetune.reward_model is None and "mix of standardised rewards" in finetune.version.notes
    # Standardised on the first batch it scored: the parent's evaluation samples, whose mixed mean is then 0.
    assert abs(run.result["eval_reward_before"]) < 1e-6
    recorded = json.loads(artifact_local_path(run.artifacts.get(name="reward_mix.json")).read_bytes())
    assert [e["stats"] for e in recorded["rewards"]] == [e["stats"] for e in mix]
    assert _recorded_mix_stats(run) == [ScoreStats(**e["stats"]) for e in mix]  # what a later attempt reuses
