"""Start an ``evaluate`` run: score model versions' images of a prompt set with a reward model."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.cli import add_run_arguments, start_run
from generators.models import PromptSet
from rewards.models import RewardModel


class Command(BaseCommand):
    help = "Score versions' images of a prompt set with a reward model (missing images are generated first)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--reward-model", required=True, help="reward model name or id")
        parser.add_argument("--prompt-set", required=True, help="prompt set name or id")
        parser.add_argument("--versions", required=True, help="comma-separated model version ids")
        parser.add_argument("--images-per-prompt", type=int, default=2)
        parser.add_argument("--device", default="auto")
        add_run_arguments(parser)

    def handle(self, *args, **options) -> None:
        reward_model = _by_name_or_id(RewardModel, options["reward_model"], "reward model")
        prompt_set = _by_name_or_id(PromptSet, options["prompt_set"], "prompt set")
        try:
            versions = [int(v) for v in options["versions"].split(",") if v.strip()]
        except ValueError as exc:
            raise CommandError(f"--versions must be comma-separated ids, not {options['versions']!r}.") from exc
        config = {
            "reward_model": reward_model.pk,
            "prompt_set": prompt_set.pk,
            "model_versions": versions,
            "images_per_prompt": options["images_per_prompt"],
            "device": options["device"],
        }
        start_run(self, kind="evaluate", config=config, options=options)


def _by_name_or_id(model, value: str, label: str):
    found = model.objects.filter(name=value).first()
    if found is None and value.isdigit():
        found = model.objects.filter(pk=int(value)).first()
    if found is None:
        raise CommandError(f"No {label} named or numbered {value!r}.")
    return found
