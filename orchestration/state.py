"""The RLHF cycle's typed settings and state: what to do, and what has been made so far (ids only)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

# The cycle fine-tunes with the DDPO defaults (finetune/config.py). They were chosen against this cycle's kind of
# reward: a learned reward's level depends on the prompt (its scores differ between captions), so advantages are
# taken within each prompt's group of images, and a small step with two inner epochs keeps the policy inside
# PPO's trust region. Over them, the cycle trains only the first 3 of the 10 sampling steps: where a shape sits
# and how large it is forms there, and trained on every step DDPO barely moved placement even against the oracle
# itself (high: 0.457 → 0.489 in 40 epochs; first 3 steps: → 0.664 in half the time; docs/benchmarks.md, "The
# early-step window"). Two guards against the tuned version drifting away from what the votes said: a KL penalty to
# the base model (`kl_beta` 0.02: with a learned reward the fine-tune otherwise raises the model's own score while the
# preference itself stalls or falls; centred, one reward model, three DDPO seeds: gold 0.622 → 0.676 on average,
# better in every seed) and the adapter averaged over the last ~10 epochs (`ema_decay` 0.9: the last epoch's
# weights wander by several gold points from one evaluation to the next). docs/benchmarks.md, "Guarding the
# fine-tune". Overrides go here (or in `rlhf_cycle --finetune`).
CYCLE_FINETUNE: dict[str, Any] = {"timestep_window": 3, "kl_beta": 0.02, "ema_decay": 0.9}

# The cycle's reward model: the frozen-backbone heads tried on the votes and the best kept by 5-fold
# cross-validation over prompts (seconds each). No one head wins on every preference (patch_linear on size and
# position, patch_mlp on a non-monotone size preference; docs/benchmarks.md, "Reward model options"), and the
# user's preference is not known in advance.
CYCLE_REWARD: dict[str, Any] = {"search": True, "search_grid": "heads"}

# Which bundled sandbox the cycle tunes: "ddim" (a Stable Diffusion UNet: DDPO, Diffusion-DPO/KTO) or "flow" (an SD3
# flow-matching transformer: the "ddpo" method's reinforcement learning is then Flow-GRPO, chosen by the finetune run
# from the model's family; Diffusion-DPO/KTO support UNets only).
SANDBOX_KINDS = ("ddim", "flow")
# The flow sandbox's fine-tune settings over the trainer's defaults (Flow-GRPO through the same trainer).
CYCLE_FLOW_FINETUNE: dict[str, Any] = {"timestep_window": 3}

# How the cycle turns votes into a tuned version: "ddpo" (reward model, then DDPO against it), "dpo" and "kto"
# (Diffusion-DPO / Diffusion-KTO straight from the collect campaign's votes, a ``preference_tune`` run). Several
# methods make one tuned version each, the arena holds them all with the base, and the cycle's pick is the tuned
# version that beats the base most often in the arena's blind votes.
METHODS = ("ddpo", "dpo", "kto")
# The default: both reward model + DDPO and Diffusion-DPO, the arena picking. Neither wins on every preference
# alone: on size both win every decided pair, on placement preferences DDPO against a good reward model still moves
# the shapes little (oracle share 0.53–0.76 on centred) where DPO wins 0.87–0.95 (docs/benchmarks.md, "The loop on
# four preferences"). The flow sandbox has Flow-GRPO only.
DEFAULT_METHODS: dict[str, tuple[str, ...]] = {"ddim": ("ddpo", "dpo"), "flow": ("ddpo",)}
PREFERENCE_ALGORITHM = {"dpo": "diffusion_dpo", "kto": "diffusion_kto"}
# The preference runs use the trainer's defaults (finetune/preference_config.py, tuned on the sandbox); overrides
# go here (or in `rlhf_cycle --preference`).
CYCLE_PREFERENCE: dict[str, Any] = {}


class CycleError(Exception):
    """A step failed or cannot start; the message says which and why."""


@dataclass(frozen=True)
class CycleSettings:
    """How the cycle runs: the web server the simulated annotators use, their oracle, and each step's scale."""

    base_url: str = "http://127.0.0.1:8000"
    oracle: str = "larger"
    noise: float = 0.1
    annotators: int = 5
    train_prompts: int = 0  # 0: every prompt of the sandbox train set
    eval_prompts: int = 0
    # 72 train prompts × 24 images → 864 pairs, one vote each: the reward model learns more from 864 distinct pairs
    # than from 288 asked three times (docs/benchmarks.md, "The twelve runs, one vote per pair").
    collect_images_per_prompt: int = 24
    collect_votes_per_pair: int = 1
    arena_images_per_prompt: int = 4
    arena_votes_per_pair: int = 3
    reward: dict[str, Any] = field(default_factory=lambda: dict(CYCLE_REWARD))  # reward_train config overrides
    finetune: dict[str, Any] = field(default_factory=lambda: dict(CYCLE_FINETUNE))  # finetune (DDPO) settings
    methods: tuple[str, ...] | None = None  # see METHODS; None: the sandbox's DEFAULT_METHODS
    preference: dict[str, Any] = field(default_factory=lambda: dict(CYCLE_PREFERENCE))  # preference_tune settings
    step_timeout: float = 3600.0
    created_by: int | None = None  # id of the user recorded as creator of the campaigns and runs
    seed: int = 0  # the simulated annotators' noise, the reward model's split and the fine-tune's sampling
    sandbox: str = "ddim"  # see SANDBOX_KINDS

    def __post_init__(self) -> None:
        if self.sandbox not in SANDBOX_KINDS:
            raise CycleError(f"sandbox: one of {', '.join(SANDBOX_KINDS)} (got {self.sandbox!r}).")
        methods = self.tuning_methods
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods or len(set(methods)) != len(methods):
            raise CycleError(f"methods: one or more of {', '.join(METHODS)}, each once (got {list(methods)}).")
        if self.sandbox == "flow" and methods != ("ddpo",):
            raise CycleError(
                "methods: the flow sandbox is tuned by a reward model and Flow-GRPO (method ddpo); Diffusion-DPO/KTO "
                "support Stable Diffusion UNets only."
            )

    @property
    def tuning_methods(self) -> tuple[str, ...]:
        """The methods the cycle runs, in order: ``methods``, or the sandbox's defaults when it is None."""
        return DEFAULT_METHODS[self.sandbox] if self.methods is None else self.methods


# The step that fills each field of CycleState, for the error raised when a later step finds it empty.
_MADE_BY = {
    "base_version": "setup",
    "train_prompt_set": "setup",
    "eval_prompt_set": "setup",
    "collect_campaign": "collect campaign",
    "reward_model": "reward model",
    "tuned_version": "fine-tune",
    "arena_campaign": "arena campaign",
}


@dataclass(frozen=True)
class CycleState:
    """What the cycle has made so far, as ids; None until the step that makes it has run.

    ``tag`` names the campaigns, prompt sets and versions the cycle creates. Steps return a new state
    (``dataclasses.replace``); a state can be built by hand to run one step alone.
    """

    tag: str
    base_version: int | None = None
    train_prompt_set: int | None = None
    eval_prompt_set: int | None = None
    collect_campaign: int | None = None
    reward_model: int | None = None
    tuned_version: int | None = None  # the first method's version
    tuned_versions: tuple[tuple[str, int], ...] = ()  # (method, version id) for every method, in order
    arena_campaign: int | None = None
    picked_version: int | None = None  # the tuned version that beat the base most often in the arena

    def require(self, name: str) -> int:
        """The id in field ``name``, or :class:`CycleError` naming the step that makes it."""
        value = getattr(self, name)
        if value is None:
            raise CycleError(f"No {name.replace('_', ' ')} yet: the {_MADE_BY[name]!r} step makes it.")
        return value

    def tuned(self) -> list[tuple[str, int]]:
        """(method, version id) of every tuned version; a state built by hand with only ``tuned_version`` is one
        DDPO version."""
        if self.tuned_versions:
            return list(self.tuned_versions)
        return [("ddpo", self.require("tuned_version"))]

    def picked(self) -> tuple[str, int]:
        """(method, version id) of the cycle's pick; before the leaderboard step (or with one method), the first
        tuned version."""
        tuned = self.tuned()
        return next((pair for pair in tuned if pair[1] == self.picked_version), tuned[0])

    def ids(self) -> dict[str, int | str | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class StepResult:
    """A step's new state and the figures it reports (ids and measurements, JSON-serialisable)."""

    state: CycleState
    figures: dict[str, Any]
