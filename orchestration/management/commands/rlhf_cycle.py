"""``manage.py rlhf_cycle``: the whole RLHF loop on the sandbox with simulated annotators (orchestration/cycle.py)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core.cli import USER_HELP, acting_user
from orchestration.cycle import StepReport, run_cycle
from orchestration.state import (
    CYCLE_FINETUNE,
    CYCLE_FLOW_FINETUNE,
    CYCLE_PREFERENCE,
    CYCLE_REWARD,
    DEFAULT_METHODS,
    METHODS,
    SANDBOX_KINDS,
    CycleError,
    CycleSettings,
)


def _json_object(text: str, option: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{option} must be a JSON object, e.g. '{{\"max_steps\": 200}}'.") from exc
    if not isinstance(value, dict):
        raise CommandError(f"{option} must be a JSON object.")
    return value


class Command(BaseCommand):
    help = (
        "Run the whole RLHF cycle on the sandbox: collect campaign → simulated votes → reward model → DDPO"
        " fine-tune (or Diffusion-DPO/KTO straight from the votes: --method) → arena → leaderboard. Needs the web"
        " server (--base-url) and a worker running. Prints each step's ids and figures, and a JSON summary last."
    )

    def add_arguments(self, parser) -> None:
        defaults = CycleSettings()
        parser.add_argument("--base-url", default=defaults.base_url, help="the running web server")
        parser.add_argument("--oracle", default=defaults.oracle, help="pair oracle of the simulated annotators")
        parser.add_argument("--noise", type=float, default=defaults.noise)
        parser.add_argument("--annotators", type=int, default=defaults.annotators)
        parser.add_argument("--train-prompts", type=int, default=defaults.train_prompts, help="0: all")
        parser.add_argument("--eval-prompts", type=int, default=defaults.eval_prompts, help="0: all")
        parser.add_argument("--collect-images-per-prompt", type=int, default=defaults.collect_images_per_prompt)
        parser.add_argument("--collect-votes-per-pair", type=int, default=defaults.collect_votes_per_pair)
        parser.add_argument("--arena-images-per-prompt", type=int, default=defaults.arena_images_per_prompt)
        parser.add_argument("--arena-votes-per-pair", type=int, default=defaults.arena_votes_per_pair)
        parser.add_argument(
            "--reward", default="{}", help=f"reward_train settings over the cycle's {CYCLE_REWARD} (JSON object)"
        )
        parser.add_argument(
            "--finetune",
            default="{}",
            help=f"DDPO / Flow-GRPO settings over the cycle's {CYCLE_FINETUNE} ({CYCLE_FLOW_FINETUNE} on the flow "
            "sandbox) (JSON object)",
        )
        parser.add_argument(
            "--sandbox",
            choices=SANDBOX_KINDS,
            default=defaults.sandbox,
            help="ddim: the Stable Diffusion sandbox (DDPO); flow: the SD3 flow-matching sandbox (Flow-GRPO)",
        )
        parser.add_argument(
            "--method",
            default="",
            help=f"how votes become a tuned version: one or more of {', '.join(METHODS)}, comma-separated (ddpo: "
            "reward model + DDPO; dpo, kto: Diffusion-DPO / -KTO straight from the votes); several meet the base "
            "in one arena, which picks the one that beats it most often (default: "
            + "; ".join(f"{kind} sandbox {','.join(methods)}" for kind, methods in DEFAULT_METHODS.items())
            + ")",
        )
        parser.add_argument(
            "--preference",
            default="{}",
            help=f"Diffusion-DPO/KTO settings over the cycle's {CYCLE_PREFERENCE} (JSON object)",
        )
        parser.add_argument("--step-timeout", type=float, default=defaults.step_timeout, help="seconds per step")
        parser.add_argument(
            "--seed", type=int, default=defaults.seed, help="annotator noise, reward split, fine-tune sampling"
        )
        parser.add_argument("--tag", default="", help="suffix of the names it creates (default: a timestamp)")
        parser.add_argument(
            "--user", default=None, help=USER_HELP.replace("the run's creator", "the creator of its campaigns and runs")
        )

    def handle(self, *args, **options) -> None:
        methods = tuple(m.strip() for m in options["method"].split(",") if m.strip()) or None
        try:
            settings = self._settings(options, methods)
        except CycleError as exc:
            raise CommandError(str(exc)) from exc

        def report(step: StepReport) -> None:
            shown = {k: _figure(v) for k, v in step.figures.items() if _shown(v)}
            figures = ", ".join(f"{k}={v}" for k, v in shown.items())
            self.stderr.write(f"[{step.minutes:5.1f} min] {step.name}: {figures}")

        try:
            results = run_cycle(settings, report, tag=options["tag"])
        except CycleError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(results, default=str))

    def _settings(self, options: dict, methods: tuple[str, ...] | None) -> CycleSettings:
        cycle_finetune = CYCLE_FLOW_FINETUNE if options["sandbox"] == "flow" else CYCLE_FINETUNE
        return CycleSettings(
            base_url=options["base_url"],
            oracle=options["oracle"],
            noise=options["noise"],
            annotators=options["annotators"],
            train_prompts=options["train_prompts"],
            eval_prompts=options["eval_prompts"],
            collect_images_per_prompt=options["collect_images_per_prompt"],
            collect_votes_per_pair=options["collect_votes_per_pair"],
            arena_images_per_prompt=options["arena_images_per_prompt"],
            arena_votes_per_pair=options["arena_votes_per_pair"],
            reward={**CYCLE_REWARD, **_json_object(options["reward"], "--reward")},
            finetune={**cycle_finetune, **_json_object(options["finetune"], "--finetune")},
            methods=methods,
            preference={**CYCLE_PREFERENCE, **_json_object(options["preference"], "--preference")},
            step_timeout=options["step_timeout"],
            seed=options["seed"],
            sandbox=options["sandbox"],
            created_by=getattr(acting_user(options["user"]), "pk", None),
        )


def _is_estimate(value: Any) -> bool:
    return isinstance(value, dict) and {"value", "low", "high"} <= value.keys()


def _shown(value: Any) -> bool:
    """Whether the progress line shows a figure: dicts and lists are left to the JSON summary, but estimates."""
    return _is_estimate(value) or not isinstance(value, dict | list)


def _figure(value: Any) -> Any:
    """A figure as the progress line shows it: an estimate (e.g. ``test_gain``) as "value [low, high]"."""
    if not _is_estimate(value):
        return value
    if value["low"] is None or value["high"] is None:
        return f"{value['value']:+.3f}"
    return f"{value['value']:+.3f} [{value['low']:+.3f}, {value['high']:+.3f}]"
