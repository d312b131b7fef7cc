"""Start a DDPO fine-tuning run: ``manage.py finetune --model-version 1 --oracle area --wait``."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.cli import add_run_arguments, start_run
from generators.models import PromptSet


class Command(BaseCommand):
    help = (
        "Fine-tune a model version with DDPO + LoRA against a reward model or a pixel oracle; with --wait, print a"
        " JSON summary last (new version id, eval reward before/after)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model-version", type=int, required=True, help="model version id to fine-tune")
        reward = parser.add_mutually_exclusive_group(required=True)
        reward.add_argument("--reward-model", type=int, help="reward model id")
        reward.add_argument("--oracle", help="a registered oracle's name (sandbox: area, colour, shape)")
        parser.add_argument("--gold-oracle", default=None, help="a registered oracle measured on the eval prompts")
        parser.add_argument(
            "--train-prompt-set", default=settings.DEFAULT_TRAIN_PROMPT_SET, help="train prompt set name or id"
        )
        parser.add_argument(
            "--eval-prompt-set", default=settings.DEFAULT_EVAL_PROMPT_SET, help="eval prompt set name or id"
        )
        parser.add_argument("--name", default=None, help="name of the new version")
        parser.add_argument("--device", default="auto")
        parser.add_argument(
            "--set", action="append", default=[], metavar="KEY=JSON", help="a DDPO setting, e.g. --set epochs=10"
        )
        add_run_arguments(parser)

    def handle(self, *args, **options) -> None:
        config: dict = {
            "model_version": options["model_version"],
            "train_prompt_set": _prompt_set(options["train_prompt_set"]),
            "eval_prompt_set": _prompt_set(options["eval_prompt_set"]),
            "device": options["device"],
        }
        for key in ("reward_model", "oracle", "gold_oracle", "name"):
            if options[key] is not None:
                config[key] = options[key]
        config.update(settings_from(options["set"]))
        start_run(self, kind="finetune", config=config, options=options)


def settings_from(items: list[str]) -> dict:
    """``--set KEY=JSON`` options as a dict; a value that is not JSON is a :class:`CommandError` naming it."""
    settings_given = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            settings_given[key.strip()] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--set {item!r}: the value must be JSON (e.g. 10, 0.001, true).") from exc
    return settings_given


def _prompt_set(value: str) -> int:
    found = PromptSet.objects.filter(name=value).first()
    if found is None and value.isdigit():
        found = PromptSet.objects.filter(pk=int(value)).first()
    if found is None:
        raise CommandError(f"No prompt set named or numbered {value!r}.")
    return found.pk
