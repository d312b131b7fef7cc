"""Start a reward-model training run: ``manage.py train_reward --campaigns 3 --wait``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.cli import add_run_arguments, start_run
from rewards.models import PreferenceDataset

OPTIONAL = {
    "name": str,
    "backbone": str,
    "trainable_layers": int,
    "lr": float,
    "weight_decay": float,
    "warmup_steps": int,
    "max_steps": int,
    "batch_size": int,
    "eval_every": int,
    "val_fraction": float,
    "test_fraction": float,
    "seed": int,
    "mixed_precision": str,
    "device": str,
}


def _ids(text: str, option: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise CommandError(f"{option} must be comma-separated ids, not {text!r}.") from exc


class Command(BaseCommand):
    help = "Train a CLIP reward model on campaigns' votes or a dataset; with --wait, print a JSON summary last."

    def add_arguments(self, parser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--campaigns", help="comma-separated campaign ids (their votes are snapshotted)")
        source.add_argument("--dataset", help="dataset name or id")
        for option, kind in OPTIONAL.items():
            parser.add_argument(f"--{option.replace('_', '-')}", type=kind, default=None)
        parser.add_argument("--include-flagged", action="store_true", help="keep votes of flagged annotators")
        parser.add_argument("--both-bad-dropped", action="store_true", help="leave both_bad votes out (not ties)")
        add_run_arguments(parser)

    def handle(self, *args, **options) -> None:
        config: dict = {
            "include_flagged": options["include_flagged"],
            "both_bad_as_tie": not options["both_bad_dropped"],
        }
        if options["campaigns"]:
            config["campaigns"] = _ids(options["campaigns"], "--campaigns")
        else:
            dataset = PreferenceDataset.objects.filter(name=options["dataset"]).first()
            if dataset is None and options["dataset"].isdigit():
                dataset = PreferenceDataset.objects.filter(pk=int(options["dataset"])).first()
            if dataset is None:
                raise CommandError(f"No dataset named or numbered {options['dataset']!r}.")
            config["dataset"] = dataset.pk
        config |= {key: options[key] for key in OPTIONAL if options[key] is not None}
        start_run(self, kind="reward_train", config=config, options=options)
