"""Import a Pick-a-Pic-schema Parquet file from disk as a preference dataset for reward training."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from rewards import services


class Command(BaseCommand):
    help = "Import a Pick-a-Pic-schema Parquet file (every row validated) as a dataset for reward training."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", help="the .parquet file")
        parser.add_argument("--name", required=True, help="a unique dataset name")
        parser.add_argument("--user", default="", help="record this username as the importer")
        parser.add_argument(
            "--criterion", default="", help="only the rows on this question (the file's criterion column)"
        )

    def handle(self, *args, **options) -> None:
        user = get_user_model().objects.filter(username=options["user"]).first() if options["user"] else None
        try:
            dataset = services.dataset_import(
                name=options["name"], path=options["path"], criterion=options["criterion"], created_by=user
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        self.stdout.write(json.dumps({"dataset": dataset.pk, "name": dataset.name, **dataset.stats}))
