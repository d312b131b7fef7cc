"""Start a Diffusion-DPO / Diffusion-KTO run from votes:
``manage.py preference_tune --model-version 1 --campaign 3 --algorithm diffusion_dpo --wait``."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from core.cli import add_run_arguments, start_run
from finetune.management.commands.finetune import _prompt_set, settings_from
from finetune.preference_config import ALGORITHMS


class Command(BaseCommand):
    help = (
        "Fine-tune a model version straight from votes (Diffusion-DPO on pairs, Diffusion-KTO on liked and disliked"
        " images) with LoRA; with --wait, print a JSON summary last (new version id, implicit accuracy, eval figures)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model-version", type=int, required=True, help="model version id to fine-tune")
        data = parser.add_mutually_exclusive_group(required=True)
        data.add_argument("--dataset", type=int, help="preference dataset id")
        data.add_argument("--campaign", type=int, action="append", help="campaign id (repeat for several)")
        parser.add_argument("--criterion", default=None, help="with campaigns: the question whose votes to learn")
        parser.add_argument(
            "--exclude-annotator",
            type=int,
            action="append",
            default=[],
            help="a user id whose votes are left out (repeat for several)",
        )
        parser.add_argument("--algorithm", choices=ALGORITHMS, default="diffusion_dpo")
        parser.add_argument("--gold-oracle", default=None, help="a registered oracle measured on the eval prompts")
        parser.add_argument(
            "--eval-prompt-set", default=settings.DEFAULT_EVAL_PROMPT_SET, help="eval prompt set name or id"
        )
        parser.add_argument("--name", default=None, help="name of the new version")
        parser.add_argument("--device", default="auto")
        parser.add_argument(
            "--set", action="append", default=[], metavar="KEY=JSON", help="a trainer setting, e.g. --set beta=500"
        )
        add_run_arguments(parser)

    def handle(self, *args, **options) -> None:
        config: dict = {
            "model_version": options["model_version"],
            "algorithm": options["algorithm"],
            "eval_prompt_set": _prompt_set(options["eval_prompt_set"]),
            "device": options["device"],
        }
        if options["dataset"] is not None:
            config["dataset"] = options["dataset"]
        else:
            config["campaigns"] = options["campaign"]
        if options["exclude_annotator"]:
            config["exclude_annotators"] = options["exclude_annotator"]
        for key in ("criterion", "gold_oracle", "name"):
            if options[key] is not None:
                config[key] = options[key]
        config.update(settings_from(options["set"]))
        start_run(self, kind="preference_tune", config=config, options=options)
