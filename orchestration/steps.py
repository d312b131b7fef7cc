"""The RLHF cycle's steps: each ``step(state, settings) -> StepResult``, callable alone on a state built by hand.

They drive the apps only through their services, selectors and runs: ``generators`` (sandbox, prompt sets),
``feedback`` (campaigns, simulated annotators over HTTP, the leaderboard), ``rewards`` (the ``reward_train`` run)
and ``finetune`` (the ``finetune`` and ``preference_tune`` runs). Runs execute on the Celery workers; a step waits
for its run.
"""

from __future__ import annotations

import io
import time
from dataclasses import replace
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from core import plugins
from core import services as run_services
from core.cli import wait_for_run
from core.models import Run
from core.run_states import RunState
from feedback import ratings
from feedback import selectors as feedback_selectors
from feedback import services as feedback_services
from feedback.models import REFIT_EVERY_RANGE, Campaign, CampaignStatus, Purpose
from feedback.simulated_annotators import NoVoteCast, SimulationRefused, simulate_votes
from feedback.simulation import TIE_MARGIN, OracleError, Simulation, resolve_pair_oracle
from generators import selectors as generator_selectors
from generators import services as generator_services
from generators.models import ModelVersion, PromptSet
from generators.sandbox_catalog import EVAL_SET, SANDBOXES, TRAIN_SET
from orchestration.state import PREFERENCE_ALGORITHM, CycleError, CycleSettings, CycleState, StepResult

# The reward oracle (for fine-tuning's gold measure) behind a pairwise oracle of another name; a pair oracle
# whose name is also a registered oracle's (the sandbox's colour, shape, centred, even, crisp) is judged by it.
GOLD_ORACLE_FOR = {"larger": "area"}

REWARD_FIGURES = (
    "reward_model",
    "chosen",
    "votes",
    "val_accuracy",
    "test_accuracy",
    "baseline_test_accuracy",
    "test_gain",
    "human_ceiling",
)
FINETUNE_FIGURES = (
    "model_version",
    "eval_reward_before",
    "eval_reward_after",
    "eval_gold_reward_before",
    "eval_gold_reward_after",
    "epochs",
)
PREFERENCE_FIGURES = (
    "model_version",
    "algorithm",
    "examples",
    "final_implicit_accuracy",
    "eval_gold_reward_before",
    "eval_gold_reward_after",
    "steps",
)
TUNE_FIGURES = {"finetune": FINETUNE_FIGURES, "preference_tune": PREFERENCE_FIGURES}  # by the tuning run's kind


# --- Helpers ---------------------------------------------------------------------------------------------------


def _creator(settings: CycleSettings):
    return get_user_model().objects.get(pk=settings.created_by) if settings.created_by is not None else None


def _start(kind: str, config: dict[str, Any], settings: CycleSettings) -> Run:
    return run_services.run_create(kind=kind, config=config, created_by=_creator(settings))


def _run_to_success(kind: str, config: dict[str, Any], settings: CycleSettings) -> Run:
    """Start a run and wait for it; :class:`CycleError` unless it succeeds within the step timeout."""
    return _wait(_start(kind, config, settings).pk, settings.step_timeout)


def _wait(run_id: int, timeout: float) -> Run:
    try:
        run = wait_for_run(run_id, timeout=timeout, poll=1.0, stream=io.StringIO())
    except CommandError as exc:  # still not finished after the timeout
        raise CycleError(str(exc)) from exc
    if run.state != RunState.SUCCEEDED:
        state = run.state if run.state in (RunState.FAILED, RunState.CANCELLED) else f"still {run.state}"
        raise CycleError(f"{run.kind} run {run.pk} is {state}: {run.error or 'is a worker running?'}")
    return run


def _open(campaign_id: int, timeout: float) -> Campaign:
    """The campaign once open: after its image generation run, when it has one, and the event that opens it."""
    campaign = Campaign.objects.get(pk=campaign_id)
    if campaign.preparing_run_id:
        _wait(campaign.preparing_run_id, timeout)
    deadline = time.monotonic() + 60
    while campaign.status != CampaignStatus.OPEN and time.monotonic() < deadline:  # opened by the run's event
        time.sleep(0.5)
        campaign.refresh_from_db()
    if campaign.status != CampaignStatus.OPEN:
        why = f": {campaign.status_note}" if campaign.status_note else ""
        raise CycleError(f"Campaign {campaign.pk} did not open (status {campaign.status}){why}.")
    return campaign


def _subset(source: str, count: int, name: str, split: str) -> PromptSet:
    prompt_set = PromptSet.objects.get(name=source)
    if not count:
        return prompt_set
    texts = list(prompt_set.items.order_by("position").values_list("prompt__text", flat=True))
    step = max(1, len(texts) // count)  # spread over colours and shapes rather than the first few
    return generator_services.prompt_set_create(name=name, split=split, prompts=texts[::step][:count])


def _campaign(
    state: CycleState,
    settings: CycleSettings,
    *,
    purpose: str,
    prompt_set: int,
    versions: list[int],
    votes_per_pair: int,
    images_per_prompt: int,
) -> Campaign:
    created = feedback_services.campaign_create(
        name=f"cycle-{state.tag}-{purpose}",
        purpose=purpose,
        prompt_set=PromptSet.objects.get(pk=prompt_set),
        model_versions=[ModelVersion.objects.get(pk=pk) for pk in versions],
        votes_per_pair=votes_per_pair,
        images_per_prompt=images_per_prompt,
        # Simulated annotators rate every pair at once and the reward step trains right after, so the campaign's
        # own refits (hand-out order, learning curve) would only queue ahead of it on the worker.
        refit_every=REFIT_EVERY_RANGE[1],
        created_by=_creator(settings),
    )
    return _open(created.pk, settings.step_timeout)


def _campaign_figures(campaign: Campaign) -> dict[str, Any]:
    return {"campaign": campaign.pk, "generation_run": campaign.preparing_run_id, "pairs": campaign.pairs.count()}


def _simulate(settings: CycleSettings, campaign: int, prefix: str) -> dict[str, Any]:
    """Simulated annotators rate every pair of ``campaign`` over HTTP; their summary."""
    try:
        oracle = resolve_pair_oracle(settings.oracle)
    except OracleError as exc:
        raise CycleError(str(exc)) from exc
    simulation = Simulation(
        base_url=settings.base_url, campaign=campaign, oracle=oracle, noise=settings.noise, seed=settings.seed
    )
    try:
        result = simulate_votes(simulation, annotators=settings.annotators, prefix=prefix)
    except (SimulationRefused, NoVoteCast) as exc:
        raise CycleError(f"Simulated annotators on campaign {campaign}: {exc}") from exc
    return {"campaign": campaign, "oracle": settings.oracle, **result.summary()}


# --- Run configs (pure: what the reward and fine-tune steps start) ----------------------------------------------


def gold_oracle_for(pair_oracle: str) -> str | None:
    """The registered pointwise oracle that judges like the simulated annotators' ``pair_oracle``, if any."""
    name = GOLD_ORACLE_FOR.get(pair_oracle, pair_oracle)
    return name if name in plugins.names("oracle") else None


def reward_run_config(state: CycleState, settings: CycleSettings) -> dict[str, Any]:
    """The ``reward_train`` config: the collect campaign's votes, named after the tag, with the overrides."""
    return {
        "campaigns": [state.require("collect_campaign")],
        "name": f"cycle-{state.tag}-reward",
        "seed": settings.seed,
        **settings.reward,
    }


def _version_name(state: CycleState, settings: CycleSettings, method: str) -> str:
    """``cycle-<tag>`` for the first method's version, ``cycle-<tag>-<method>`` for the others."""
    return f"cycle-{state.tag}" if method == settings.tuning_methods[0] else f"cycle-{state.tag}-{method}"


def _with_gold(config: dict[str, Any], settings: CycleSettings) -> dict[str, Any]:
    gold = gold_oracle_for(settings.oracle)
    if gold is not None:
        config.setdefault("gold_oracle", gold)
    return config


def finetune_run_config(state: CycleState, settings: CycleSettings) -> dict[str, Any]:
    """The ``finetune`` config: the base version against the reward model, gold-measured by the annotators'
    oracle when it has a pointwise counterpart."""
    config = {
        "model_version": state.require("base_version"),
        "reward_model": state.require("reward_model"),
        "train_prompt_set": state.require("train_prompt_set"),
        "eval_prompt_set": state.require("eval_prompt_set"),
        "name": _version_name(state, settings, "ddpo"),
        "seed": settings.seed,
        **settings.finetune,
    }
    return _with_gold(config, settings)


def preference_run_config(state: CycleState, settings: CycleSettings, method: str) -> dict[str, Any]:
    """The ``preference_tune`` config of ``method`` ("dpo" or "kto"): the base version straight from the collect
    campaign's votes, gold-measured like the DDPO run."""
    config = {
        "model_version": state.require("base_version"),
        "campaigns": [state.require("collect_campaign")],
        "algorithm": PREFERENCE_ALGORITHM[method],
        "eval_prompt_set": state.require("eval_prompt_set"),
        "name": _version_name(state, settings, method),
        "seed": settings.seed,
        **settings.preference,
    }
    return _with_gold(config, settings)


# --- Steps -------------------------------------------------------------------------------------------------------


def setup(state: CycleState, settings: CycleSettings) -> StepResult:
    """Register the sandboxes (idempotent), take the base version of ``settings.sandbox`` and the train and eval
    prompt sets (subsets when asked)."""
    call_command("sandbox_setup", stdout=io.StringIO())
    base_model = SANDBOXES[settings.sandbox].base_model
    base = ModelVersion.objects.get(base_model__name=base_model, name=generator_services.BASE_VERSION_NAME)
    train = _subset(TRAIN_SET, settings.train_prompts, f"cycle-{state.tag}-train", "train")
    evaluation = _subset(EVAL_SET, settings.eval_prompts, f"cycle-{state.tag}-eval", "eval")
    state = replace(state, base_version=base.pk, train_prompt_set=train.pk, eval_prompt_set=evaluation.pk)
    figures = {
        "sandbox": base_model,
        "base_version": base.pk,
        "train_prompts": train.prompts.count(),
        "eval_prompts": evaluation.prompts.count(),
    }
    return StepResult(state, figures)


def collect_campaign(state: CycleState, settings: CycleSettings) -> StepResult:
    """A collect campaign of the base version's images on the train prompts, open once its images exist."""
    campaign = _campaign(
        state,
        settings,
        purpose=Purpose.COLLECT,
        prompt_set=state.require("train_prompt_set"),
        versions=[state.require("base_version")],
        votes_per_pair=settings.collect_votes_per_pair,
        images_per_prompt=settings.collect_images_per_prompt,
    )
    return StepResult(replace(state, collect_campaign=campaign.pk), _campaign_figures(campaign))


def collect_votes(state: CycleState, settings: CycleSettings) -> StepResult:
    """Simulated annotators rate every pair of the collect campaign."""
    return StepResult(state, _simulate(settings, state.require("collect_campaign"), f"sim-{state.tag}"))


def reward_model(state: CycleState, settings: CycleSettings) -> StepResult:
    """Train a reward model on the collect campaign's votes (a ``reward_train`` run); only DDPO needs one."""
    if "ddpo" not in settings.tuning_methods:
        return StepResult(state, {"skipped": f"no reward model for {', '.join(settings.tuning_methods)}"})
    run = _run_to_success("reward_train", reward_run_config(state, settings), settings)
    state = replace(state, reward_model=run.result["reward_model"])
    return StepResult(state, {"run": run.pk, **{key: run.result.get(key) for key in REWARD_FIGURES}})


def _start_tune(state: CycleState, settings: CycleSettings, method: str) -> Run:
    if method == "ddpo":
        return _start("finetune", finetune_run_config(state, settings), settings)
    return _start("preference_tune", preference_run_config(state, settings, method), settings)


def finetune(state: CycleState, settings: CycleSettings) -> StepResult:
    """Tune the base version by each method: DDPO + LoRA against the reward model (a ``finetune`` run),
    Diffusion-DPO / KTO straight from the votes (a ``preference_tune`` run). Every method's run is queued first and
    then waited for, so that workers with room (``run-platform.sh`` starts two slots) tune side by side. The first
    method's figures are reported flat, every method's under ``methods``."""
    started = {method: _start_tune(state, settings, method) for method in settings.tuning_methods}
    by_method = {}
    for method, queued in started.items():
        run = _wait(queued.pk, settings.step_timeout)
        by_method[method] = {"run": run.pk, **{key: run.result.get(key) for key in TUNE_FIGURES[run.kind]}}
    tuned = tuple((method, figures["model_version"]) for method, figures in by_method.items())
    state = replace(state, tuned_version=tuned[0][1], tuned_versions=tuned)
    return StepResult(state, {**by_method[settings.tuning_methods[0]], "methods": by_method})


def arena_campaign(state: CycleState, settings: CycleSettings) -> StepResult:
    """An arena campaign, the base and every tuned version, on the eval prompts."""
    campaign = _campaign(
        state,
        settings,
        purpose=Purpose.ARENA,
        prompt_set=state.require("eval_prompt_set"),
        versions=[state.require("base_version"), *(version for _, version in state.tuned())],
        votes_per_pair=settings.arena_votes_per_pair,
        images_per_prompt=settings.arena_images_per_prompt,
    )
    return StepResult(replace(state, arena_campaign=campaign.pk), _campaign_figures(campaign))


def arena_votes(state: CycleState, settings: CycleSettings) -> StepResult:
    """Simulated annotators rate every pair of the arena."""
    return StepResult(state, _simulate(settings, state.require("arena_campaign"), f"sim-{state.tag}-arena"))


def _head_to_head(board: dict[str, Any], tuned: int, base: int) -> dict[str, Any]:
    match = ratings.head_to_head(board, tuned, base)
    if match is None:
        raise CycleError(f"The arena has no votes between version {tuned} and the base.")
    return {
        "tuned_win_rate": match.win_rate,
        "tuned_beats_base_probability_interval": list(match.beats_interval) if match.beats_interval else None,
        "votes": match.votes,
        "enough_votes": match.enough_votes,
        "tuned_is_better": match.model_is_better,
        "winner": match.winner,
        "verdict_text": match.verdict_text,
    }


def pick_tuned(tuned: list[tuple[str, int]], by_method: dict[str, dict[str, Any]]) -> tuple[str, int]:
    """The (method, version) whose arena win rate against the base is highest; the first method on a tie."""
    return max(tuned, key=lambda pair: by_method[pair[0]]["tuned_win_rate"] or 0.0)


def leaderboard(state: CycleState, settings: CycleSettings) -> StepResult:
    """The arena's Bradley–Terry leaderboard: each tuned version against the base, decided by the typed verdict
    (every method's under ``methods``), and the ranks of all versions. With several methods the cycle picks the
    tuned version with the highest win rate against the base (ties: the first method); the pick's figures are
    reported flat, and ``picked`` names its method."""
    base, tuned = state.require("base_version"), state.tuned()
    board = feedback_selectors.campaign_leaderboard(Campaign.objects.get(pk=state.require("arena_campaign")))
    by_method = {method: _head_to_head(board, version, base) for method, version in tuned}
    picked_method, picked_version = pick_tuned(tuned, by_method)
    figures = {
        "picked": picked_method,
        "picked_version": picked_version,
        **by_method[picked_method],
        "methods": by_method,
        "ranks": [{"version": row["model"], "name": row["name"], "rank": row["rank"]} for row in board["models"]],
    }
    return StepResult(replace(state, picked_version=picked_version), figures)


def oracle_verdicts(rewards: list[tuple[float, float]], margin: float = TIE_MARGIN) -> dict[str, Any]:
    """(base, tuned) oracle rewards of the same prompt and seed → how often the tuned image is better.

    A pair is decided when the rewards differ by at least ``margin`` (the simulated annotators' tie margin).
    """
    decided = [(base, tuned) for base, tuned in rewards if abs(tuned - base) >= margin]
    better = sum(tuned > base for base, tuned in decided)
    return {
        "pairs": len(rewards),
        "decided": len(decided),
        "tuned_better": better,
        "tuned_better_share": round(better / len(decided), 4) if decided else None,
        "reward_before": round(sum(b for b, _ in rewards) / len(rewards), 4) if rewards else None,
        "reward_after": round(sum(t for _, t in rewards) / len(rewards), 4) if rewards else None,
    }


def _oracle_reward_of(oracle, image) -> float:
    with image.file.open("rb") as handle:
        pixels = Image.open(handle).convert("RGB")
        return float(oracle(image.prompt.text, pixels))


def oracle_judgement(state: CycleState, settings: CycleSettings) -> StepResult:
    """The arena's images judged by the annotators' own oracle (its pointwise form): in how many decided eval
    prompt/seed pairs is each tuned version's image better than the base's? The pick's figures are flat."""
    gold = gold_oracle_for(settings.oracle)
    if gold is None:
        return StepResult(state, {"oracle": None, "note": f"no registered oracle judges like {settings.oracle!r}"})
    campaign = Campaign.objects.get(pk=state.require("arena_campaign"))
    base, tuned = state.require("base_version"), state.tuned()
    prompts = [prompt.pk for prompt in generator_selectors.prompts_of(campaign.prompt_set_id)]
    versions = [base, *(version for _, version in tuned)]
    images = generator_selectors.images_for(versions, prompts, None, feedback_services.campaign_settings(campaign))
    oracle = plugins.resolve("oracle", gold)
    scores = {key: _oracle_reward_of(oracle, image) for key, image in images.items()}
    by_method = {}
    for method, version in tuned:
        rewards = [
            (score, scores[(version, prompt, seed)])
            for (owner, prompt, seed), score in sorted(scores.items())
            if owner == base and (version, prompt, seed) in scores
        ]
        by_method[method] = oracle_verdicts(rewards)
    picked = state.picked()[0]
    return StepResult(state, {"oracle": gold, "picked": picked, **by_method[picked], "methods": by_method})
