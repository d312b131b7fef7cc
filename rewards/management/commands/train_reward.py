"""Start a reward-model training run: ``manage.py train_reward --campaigns 3 --wait``."""

from __future__ import annotations

import argparse
import json

from django.core.management.base import BaseCommand, CommandError

from core.cli import add_run_arguments, start_run
from rewards.config import RewardTrainConfig
from rewards.models import PreferenceDataset
from rewards.run_configs import TRAINING_FIELDS

OPTIONAL = {
    "name": str,
    "backbone": str,
    "val_fraction": float,
    "test_fraction": float,
}


def _setting(text: str):
    """A training setting as JSON (``6``, ``1e-3``, ``null``, ``true``) or else the text itself (``cosine``);
    the run config checks it."""
    try:
        return json.loads(text)
    except ValueError:
        return text


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
        for name in TRAINING_FIELDS:
            help_text = RewardTrainConfig.describe(name).replace("%", "%%")
            parser.add_argument(f"--{name.replace('_', '-')}", type=_setting, default=argparse.SUPPRESS, help=help_text)
        parser.add_argument("--include-flagged", action="store_true", help="keep votes of flagged annotators")
        parser.add_argument(
            "--exclude-annotators", help="comma-separated user ids whose votes are left out (e.g. a deactivated one's)"
        )
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
        if options["exclude_annotators"]:
            config["exclude_annotators"] = _ids(options["exclude_annotators"], "--exclude-annotators")
        config |= {key: options[key] for key in OPTIONAL if options[key] is not None}
        config |= {name: options[name] for name in TRAINING_FIELDS if name in options}  # given, maybe null
        start_run(self, kind="reward_train", config=config, options=options)
