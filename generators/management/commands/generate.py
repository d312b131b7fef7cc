"""Start a generation run: ``manage.py generate --prompt-set NAME --versions 1,2 --images-per-prompt 4 --wait``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.cli import add_run_arguments, start_run
from generators.models import PromptSet


class Command(BaseCommand):
    help = "Generate N images per prompt of a prompt set for model versions; with --wait, print a JSON summary last."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--prompt-set", required=True, help="prompt set name or id")
        parser.add_argument("--versions", required=True, help="comma-separated model version ids")
        parser.add_argument("--images-per-prompt", type=int, default=1)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--batch-size", type=int, default=8)
        for option in ("--scheduler", "--negative-prompt", "--device", "--dtype"):
            parser.add_argument(option, default=None)
        for option in ("--steps", "--width", "--height"):
            parser.add_argument(option, type=int, default=None)
        parser.add_argument("--guidance-scale", type=float, default=None)
        add_run_arguments(parser)

    def handle(self, *args, **options) -> None:
        prompt_set = PromptSet.objects.filter(name=options["prompt_set"]).first()
        if prompt_set is None and options["prompt_set"].isdigit():
            prompt_set = PromptSet.objects.filter(pk=int(options["prompt_set"])).first()
        if prompt_set is None:
            raise CommandError(f"No prompt set named or numbered {options['prompt_set']!r}.")
        try:
            versions = [int(v) for v in options["versions"].split(",") if v.strip()]
        except ValueError as exc:
            raise CommandError(f"--versions must be comma-separated ids, not {options['versions']!r}.") from exc
        config = {"model_versions": versions, "prompt_set": prompt_set.pk}
        for key in (
            "images_per_prompt",
            "seed",
            "batch_size",
            "scheduler",
            "negative_prompt",
            "device",
            "dtype",
            "steps",
            "width",
            "height",
            "guidance_scale",
        ):
            if options[key] is not None:
                config[key] = options[key]
        start_run(self, kind="generate", config=config, options=options)
