"""The closed loop end to end: a real Celery worker runs every job, simulated annotators vote over HTTP
against the live server, and ``manage.py rlhf_cycle`` goes from the base version to a leaderboard.

Reduced scale (a few minutes on two CPU cores); the full-scale figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from core.models import Run
from feedback.models import Campaign, Vote
from finetune.models import FineTune
from rewards.config import RewardTrainConfig
from rewards.head_train import search_candidates
from rewards.models import RewardModel

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REDUCED = [
    "--train-prompts", "24",
    "--eval-prompts", "8",
    "--collect-images-per-prompt", "6",
    "--collect-votes-per-pair", "3",
    "--arena-images-per-prompt", "2",
    "--arena-votes-per-pair", "3",
    "--annotators", "4",
    "--reward", json.dumps({"max_steps": 150, "head_steps": 100, "ensemble_size": 2}),
    "--finetune", json.dumps({"epochs": 3, "samples_per_epoch": 16, "images_per_prompt": 4, "eval_every": 3}),
    "--tag", "ci",
]  # fmt: skip


@pytest.mark.parametrize("broker", ["filesystem"], indirect=True)
def test_rlhf_cycle_runs_every_stage_through_a_real_worker(start_worker, live_server, users):
    start_worker()
    out, err = io.StringIO(), io.StringIO()

    call_command("rlhf_cycle", "--base-url", live_server.url, *REDUCED, "--method", "ddpo", stdout=out, stderr=err)

    results = json.loads(out.getvalue().strip().splitlines()[-1])
    progress = err.getvalue()
    print(progress)  # the figures of each stage, in the test log
    for step in ("setup", "collect campaign", "simulated votes", "reward model", "fine-tune", "arena campaign"):
        assert f"] {step}:" in progress
    # Every job ran on the worker and succeeded.
    runs = Run.objects.order_by("id")
    assert [r.kind for r in runs] == ["generate", "reward_train", "finetune", "generate"]
    assert all(r.state == "succeeded" and r.worker != "inline" for r in runs), [(r.kind, r.error) for r in runs]
    # Votes came in through the API and fill the collect campaign to k.
    collect = Campaign.objects.get(name="cycle-ci-collect")
    assert results["simulated votes"]["errors"] == 0
    assert Vote.objects.filter(pair__campaign=collect).exclude(choice="skip").count() == collect.pairs.count() * 3
    # The reward model beats its zero-shot baseline on held-out pairs.
    reward = results["reward model"]
    assert RewardModel.objects.get(pk=reward["reward_model"]).dataset.campaigns.get() == collect
    assert reward["test_accuracy"] > reward["baseline_test_accuracy"], reward
    gain = reward["test_gain"]  # with its interval over the test prompts, on the progress line too
    assert gain["value"] == pytest.approx(reward["test_accuracy"] - reward["baseline_test_accuracy"])
    assert f"test_gain={gain['value']:+.3f}" in progress
    assert reward["chosen"] in {candidate.name for candidate in search_candidates(RewardTrainConfig())}
    # The fine-tune made a child of the base version, and the arena compared them with a verdict.
    tune = FineTune.objects.get(run_id=results["fine-tune"]["run"])
    assert tune.parent.name == "base" and tune.version.parent == tune.parent
    assert tune.reward_model_id == reward["reward_model"]
    board = results["leaderboard"]
    assert board["votes"] == Campaign.objects.get(name="cycle-ci-arena").pairs.count() * 3
    ranked = {(row["version"], row["name"]) for row in board["ranks"]}
    assert ranked == {(tune.parent_id, "sandbox/base"), (tune.version_id, "sandbox/cycle-ci")}
    assert isinstance(board["enough_votes"], bool) and board["verdict_text"]
    assert board["winner"] in (None, tune.parent_id, tune.version_id)
    assert board["tuned_is_better"] == (board["enough_votes"] and board["winner"] == tune.version_id)
    assert results["state"]["tuned_version"] == tune.version_id == results["fine-tune"]["model_version"]
    # The arena's images judged by the annotators' own oracle: every eval prompt/seed of both versions.
    judged = results["oracle judgement"]
    arena = Campaign.objects.get(name="cycle-ci-arena")
    assert judged["oracle"] == "area" and judged["pairs"] == arena.prompt_set.prompts.count() * arena.images_per_prompt
    assert 0 <= judged["tuned_better"] <= judged["decided"] <= judged["pairs"]


@pytest.mark.parametrize("broker", ["filesystem"], indirect=True)
def test_dpo_and_kto_from_the_votes_meet_the_base_in_one_arena(start_worker, live_server, users):
    start_worker()
    out, err = io.StringIO(), io.StringIO()
    reduced = [*REDUCED[:-2], "--tag", "pref"]
    preference = {"train_steps": 150, "eval_every": 0, "sample_steps": 10}
    options = ["--method", "dpo,kto", "--preference", json.dumps(preference)]

    call_command("rlhf_cycle", "--base-url", live_server.url, *reduced, *options, stdout=out, stderr=err)

    results = json.loads(out.getvalue().strip().splitlines()[-1])
    print(err.getvalue())
    runs = Run.objects.order_by("id")
    assert [r.kind for r in runs] == ["generate", "preference_tune", "preference_tune", "generate"]
    assert all(r.state == "succeeded" and r.worker != "inline" for r in runs), [(r.kind, r.error) for r in runs]
    assert results["reward model"]["skipped"] == "no reward model for dpo, kto"
    assert not RewardModel.objects.exists()
    # Each method made a child of the base from a snapshot of the collect campaign's votes.
    collect = Campaign.objects.get(name="cycle-pref-collect")
    tuned = results["fine-tune"]["methods"]
    for method, algorithm, name in (("dpo", "diffusion_dpo", "cycle-pref"), ("kto", "diffusion_kto", "cycle-pref-kto")):
        tune = FineTune.objects.get(run_id=tuned[method]["run"])
        assert tune.algorithm == algorithm and tune.version.name == name and tune.version.parent.name == "base"
        assert tune.dataset.campaigns.get() == collect and tune.reward_model is None
    # One arena: the base and both tuned versions, every pair of them voted; a head-to-head and an oracle
    # judgement per method.
    arena = Campaign.objects.get(name="cycle-pref-arena")
    assert arena.model_versions.count() == 3
    board = results["leaderboard"]
    assert {row["name"] for row in board["ranks"]} == {"sandbox/base", "sandbox/cycle-pref", "sandbox/cycle-pref-kto"}
    assert set(board["methods"]) == {"dpo", "kto"} and board["votes"] == board["methods"]["dpo"]["votes"]
    judged = results["oracle judgement"]["methods"]
    assert set(judged) == {"dpo", "kto"}
    # On the size preference a short run of each already wins most decided eval pairs by the oracle itself, and the
    # version the arena picks wins at least three in four. (Each share is over ~15 decided pairs: one method alone
    # at 0.75 failed one run in several, DPO 10 of 15.)
    assert all(judged[method]["tuned_better_share"] >= 0.6 for method in ("dpo", "kto")), judged
    picked = results["leaderboard"]["picked"]
    assert picked in {"dpo", "kto"} and results["oracle judgement"]["picked"] == picked
    assert judged[picked]["tuned_better_share"] >= 0.75, (board["methods"], judged)
