"""Each step of the RLHF cycle alone, on a state built by hand (the whole cycle: tests/e2e/test_rlhf_cycle.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from django.core.exceptions import ValidationError

from core import services as run_services
from core.run_execution import run_execute
from feedback import handout, services
from feedback.models import Campaign, CampaignStatus
from generators.models import ModelVersion, PromptSet
from orchestration import cycle, steps
from orchestration.cycle import STEPS
from orchestration.state import CycleError, CycleSettings, CycleState
from tests.feedback.test_leaderboard_and_promotion import _vote_all, arena  # noqa: F401 - a fixture
from tests.feedback.test_simulation import ANNOTATORS, PROMPTS, K, shapes_campaign  # noqa: F401 - a fixture

SMALL = CycleSettings(train_prompts=3, eval_prompts=2, collect_images_per_prompt=2, arena_images_per_prompt=1)


@pytest.fixture
def sandbox_state(db, settings, tmp_path) -> CycleState:
    settings.MEDIA_ROOT = tmp_path / "media"
    return steps.setup(CycleState(tag="t"), SMALL).state


def _generate(versions: list[int], prompt_set: int, images_per_prompt: int) -> None:
    """The images a campaign needs, made by a generate run executed here (so the campaign opens at once)."""
    run = run_services.run_create(
        kind="generate",
        config={"model_versions": versions, "prompt_set": prompt_set, "images_per_prompt": images_per_prompt},
    )
    assert run_execute(run_id=run.pk, worker="inline") == "succeeded"


def test_the_cycle_runs_its_steps_in_order():
    assert [name for name, _ in STEPS] == [
        "setup",
        "collect campaign",
        "simulated votes",
        "reward model",
        "fine-tune",
        "arena campaign",
        "simulated arena votes",
        "leaderboard",
        "oracle judgement",
    ]


def test_a_step_refused_by_a_service_is_a_cycle_error_naming_the_step(monkeypatch):
    def taken(state, settings):
        raise ValidationError({"name": ["A prompt set named 'cycle-x-train' already exists."]})

    monkeypatch.setattr(cycle, "STEPS", [("setup", taken)])
    with pytest.raises(CycleError, match="^Step setup: A prompt set named 'cycle-x-train' already exists."):
        cycle.run_cycle(CycleSettings(), lambda report: None, tag="x")


@pytest.mark.django_db
def test_setup_registers_the_sandbox_and_takes_prompt_subsets(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"

    result = steps.setup(CycleState(tag="t"), SMALL)

    state = result.state
    base = ModelVersion.objects.select_related("base_model").get(pk=state.base_version)
    assert (base.base_model.name, base.name) == ("sandbox", "base")
    train, evaluation = (
        PromptSet.objects.get(pk=state.train_prompt_set),
        PromptSet.objects.get(pk=state.eval_prompt_set),
    )
    assert (train.name, train.split, train.prompts.count()) == ("cycle-t-train", "train", 3)
    assert (evaluation.name, evaluation.split, evaluation.prompts.count()) == ("cycle-t-eval", "eval", 2)
    assert result.figures == {"sandbox": "sandbox", "base_version": base.pk, "train_prompts": 3, "eval_prompts": 2}
    assert state.collect_campaign is None and state.tag == "t"

    flow = steps.setup(CycleState(tag="f"), replace(SMALL, sandbox="flow"))
    base = ModelVersion.objects.select_related("base_model").get(pk=flow.state.base_version)
    assert (base.base_model.name, base.name, flow.figures["sandbox"]) == ("sandbox-flow", "base", "sandbox-flow")


def test_the_flow_sandbox_cycle_tunes_by_reward_model_and_flow_grpo_only():
    assert CycleSettings().tuning_methods == ("ddpo", "dpo")  # the Stable Diffusion sandbox: both, the arena picks
    assert CycleSettings(sandbox="flow").tuning_methods == ("ddpo",)
    with pytest.raises(CycleError, match="^methods: the flow sandbox is tuned by a reward model and Flow-GRPO"):
        CycleSettings(sandbox="flow", methods=("ddpo", "dpo"))
    with pytest.raises(CycleError, match="^sandbox: one of ddim, flow"):
        CycleSettings(sandbox="sd3")


def test_a_step_without_its_inputs_names_the_step_that_makes_them():
    with pytest.raises(CycleError, match="No collect campaign yet: the 'collect campaign' step makes it"):
        steps.collect_votes(CycleState(tag="t"), CycleSettings())
    with pytest.raises(CycleError, match="No reward model yet: the 'reward model' step makes it"):
        steps.finetune(CycleState(tag="t", base_version=1, train_prompt_set=2, eval_prompt_set=3), CycleSettings())
    with pytest.raises(CycleError, match="No tuned version yet: the 'fine-tune' step makes it"):
        steps.arena_campaign(CycleState(tag="t", base_version=1, eval_prompt_set=3), CycleSettings())


def test_run_configs_come_from_the_state_and_the_overrides():
    state = CycleState(
        tag="t", base_version=1, train_prompt_set=2, eval_prompt_set=3, collect_campaign=4, reward_model=5
    )
    settings = CycleSettings(oracle="colour", reward={"max_steps": 10}, finetune={"epochs": 2}, seed=7)

    assert steps.reward_run_config(state, settings) == {
        "campaigns": [4],
        "name": "cycle-t-reward",
        "seed": 7,
        "max_steps": 10,
    }
    assert steps.finetune_run_config(state, settings) == {
        "model_version": 1,
        "reward_model": 5,
        "train_prompt_set": 2,
        "eval_prompt_set": 3,
        "name": "cycle-t",
        "seed": 7,
        "epochs": 2,
        "gold_oracle": "colour",
    }
    # By default the cycle's reward step searches the heads and keeps the best by validation.
    assert steps.reward_run_config(state, CycleSettings())["search_grid"] == "heads"
    own_oracle = CycleSettings(oracle="my.module:judge")
    assert "gold_oracle" not in steps.finetune_run_config(state, own_oracle)
    assert steps.finetune_run_config(state, CycleSettings(oracle="larger"))["gold_oracle"] == "area"
    assert steps.finetune_run_config(state, CycleSettings(oracle="centred"))["gold_oracle"] == "centred"


def test_several_methods_tune_one_version_each_and_only_ddpo_needs_a_reward_model():
    state = CycleState(tag="t", base_version=1, train_prompt_set=2, eval_prompt_set=3, collect_campaign=4)
    settings = CycleSettings(oracle="larger", methods=("dpo", "ddpo", "kto"), preference={"beta": 250.0}, seed=3)

    assert steps.preference_run_config(state, settings, "dpo") == {
        "model_version": 1,
        "campaigns": [4],
        "algorithm": "diffusion_dpo",
        "eval_prompt_set": 3,
        "name": "cycle-t",  # the first method's version carries the cycle's name
        "seed": 3,
        "beta": 250.0,
        "gold_oracle": "area",
    }
    kto = steps.preference_run_config(state, settings, "kto")
    assert kto["algorithm"] == "diffusion_kto" and kto["name"] == "cycle-t-kto"
    assert steps.finetune_run_config(replace(state, reward_model=5), settings)["name"] == "cycle-t-ddpo"
    skipped = steps.reward_model(state, CycleSettings(methods=("dpo", "kto")))
    assert skipped.state == state and skipped.figures == {"skipped": "no reward model for dpo, kto"}
    for methods in ((), ("ppo",), ("dpo", "dpo")):
        with pytest.raises(CycleError, match="^methods: one or more of ddpo, dpo, kto"):
            CycleSettings(methods=methods)
    with_two = replace(state, tuned_version=7, tuned_versions=(("dpo", 7), ("kto", 8)))
    assert with_two.tuned() == [("dpo", 7), ("kto", 8)]
    assert replace(state, tuned_version=9).tuned() == [("ddpo", 9)]


def test_oracle_verdicts_count_only_decided_pairs():
    verdicts = steps.oracle_verdicts([(0.2, 0.5), (0.5, 0.3), (0.4, 0.41), (0.1, 0.9)], margin=0.02)
    assert (verdicts["pairs"], verdicts["decided"], verdicts["tuned_better"]) == (4, 3, 2)
    assert verdicts["tuned_better_share"] == round(2 / 3, 4)
    assert verdicts["reward_before"] == 0.3 and verdicts["reward_after"] == 0.5275
    assert steps.oracle_verdicts([(0.5, 0.5)])["tuned_better_share"] is None


def test_campaign_steps_open_campaigns_whose_images_exist(sandbox_state):
    state = sandbox_state
    _generate([state.base_version], state.train_prompt_set, images_per_prompt=2)

    collected = steps.collect_campaign(state, SMALL)

    collect = Campaign.objects.get(pk=collected.state.collect_campaign)
    assert (collect.name, collect.purpose, collect.status) == ("cycle-t-collect", "collect", CampaignStatus.OPEN)
    assert collected.figures == {"campaign": collect.pk, "generation_run": None, "pairs": 3}

    base = ModelVersion.objects.get(pk=state.base_version)
    tuned = ModelVersion.objects.create(base_model=base.base_model, name="cycle-t", parent=base)
    _generate([tuned.pk, base.pk], state.eval_prompt_set, images_per_prompt=1)
    arena_result = steps.arena_campaign(replace(collected.state, tuned_version=tuned.pk), SMALL)

    campaign = Campaign.objects.get(pk=arena_result.state.arena_campaign)
    assert (campaign.name, campaign.purpose, campaign.status) == ("cycle-t-arena", "arena", CampaignStatus.OPEN)
    assert set(campaign.model_versions.values_list("pk", flat=True)) == {base.pk, tuned.pk}
    assert arena_result.figures["pairs"] == 2 and arena_result.state.collect_campaign == collect.pk


@pytest.mark.django_db(transaction=True)
def test_the_vote_step_calls_the_simulated_annotators_over_http(live_server, shapes_campaign):  # noqa: F811
    campaign, _ = shapes_campaign
    state = CycleState(tag="t", collect_campaign=campaign.pk)
    settings = CycleSettings(base_url=live_server.url, oracle="larger", noise=0.0, annotators=ANNOTATORS)

    result = steps.collect_votes(state, settings)

    assert result.state == state
    figures = result.figures
    assert (figures["campaign"], figures["oracle"], figures["annotators"]) == (campaign.pk, "larger", ANNOTATORS)
    assert figures["votes"] == PROMPTS * K and figures["errors"] == 0 and figures["agreement"] == 1.0
    assert campaign.annotators.filter(username__startswith="sim-t-").count() == ANNOTATORS


@pytest.mark.django_db
def test_the_vote_step_fails_clearly_on_a_closed_campaign(shapes_campaign):  # noqa: F811
    campaign, _ = shapes_campaign
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.CLOSED)

    with pytest.raises(CycleError, match=f"Simulated annotators on campaign {campaign.pk}: .* is closed"):
        steps.collect_votes(CycleState(tag="t", collect_campaign=campaign.pk), CycleSettings())


def _arena_state(arena) -> CycleState:  # noqa: F811
    return CycleState(
        tag="t",
        base_version=arena["parent"].pk,
        tuned_version=arena["child"].pk,
        arena_campaign=arena["campaign"].pk,
    )


def test_the_leaderboard_step_reports_the_typed_head_to_head(arena):  # noqa: F811
    _vote_all(arena, prefer_child_every=6)  # the tuned version wins 30 of 36 votes

    result = steps.leaderboard(_arena_state(arena), CycleSettings())

    figures = result.figures
    child, parent = arena["child"].pk, arena["parent"].pk
    assert figures["picked"] == "ddpo" and figures["picked_version"] == child and result.state.picked_version == child
    assert figures["methods"]["ddpo"]["tuned_win_rate"] == figures["tuned_win_rate"]
    assert figures["tuned_win_rate"] == pytest.approx(30 / 36) and figures["votes"] == 36
    assert figures["tuned_beats_base_probability_interval"][0] > 0.5
    assert figures["enough_votes"] is True and figures["tuned_is_better"] is True and figures["winner"] == child
    assert figures["verdict_text"] == "tiny/tuned beats tiny/base"
    assert figures["ranks"] == [
        {"version": child, "name": "tiny/tuned", "rank": 1},
        {"version": parent, "name": "tiny/base", "rank": 2},
    ]


def test_the_cycle_picks_the_tuned_version_that_beats_the_base_most_often():
    tuned = [("ddpo", 7), ("dpo", 8), ("kto", 9)]
    rates = {"ddpo": 0.61, "dpo": 0.83, "kto": 0.83}
    by_method = {method: {"tuned_win_rate": rate} for method, rate in rates.items()}
    assert steps.pick_tuned(tuned, by_method) == ("dpo", 8)  # a tie goes to the earlier method
    assert steps.pick_tuned(tuned, {**by_method, "dpo": {"tuned_win_rate": None}}) == ("kto", 9)
    state = CycleState(tag="t", tuned_version=7, tuned_versions=tuple(tuned))
    assert state.picked() == ("ddpo", 7) and replace(state, picked_version=9).picked() == ("kto", 9)


def test_the_leaderboard_step_says_when_the_votes_are_not_enough(arena):  # noqa: F811
    with pytest.raises(CycleError, match=f"no votes between version {arena['child'].pk} and the base"):
        steps.leaderboard(_arena_state(arena), CycleSettings())
    annotator = arena["annotators"][0]
    for _ in range(3):
        lease = handout.next_assignment(annotator=annotator, campaign=arena["campaign"])
        services.vote_submit(annotator=annotator, assignment_id=lease.assignment, submitted="tie")

    figures = steps.leaderboard(_arena_state(arena), CycleSettings()).figures

    assert figures["enough_votes"] is False and figures["tuned_is_better"] is False and figures["winner"] is None
    assert figures["votes"] == 3 and figures["tuned_win_rate"] == 0.5
