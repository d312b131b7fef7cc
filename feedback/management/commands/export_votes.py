"""Export a campaign's votes as Pick-a-Pic-schema Parquet (ties 0.5/0.5; skips, flagged annotators and the users
named by ``--exclude-user`` left out; each row's criterion column names the question it answers)."""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from feedback import selectors
from feedback.exports import pickapic_rows
from feedback.models import Campaign
from feedback.pickapic import write_parquet


class Command(BaseCommand):
    help = "Write a campaign's votes to a Pick-a-Pic-schema Parquet file for reward training."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--campaign", type=int, required=True)
        parser.add_argument("--out", required=True, help="output .parquet path")
        parser.add_argument(
            "--gold-threshold", type=float, default=0.7, help="flag annotators below this gold accuracy"
        )
        parser.add_argument(
            "--min-gold", type=int, default=5, help="gold votes needed before an annotator can be flagged"
        )
        parser.add_argument("--include-flagged", action="store_true", help="keep votes of flagged annotators")
        parser.add_argument(
            "--criterion", default=None, help="only the votes on this question (default: every question's votes)"
        )
        parser.add_argument(
            "--exclude-user",
            action="append",
            default=[],
            metavar="USERNAME",
            help="leave out this user's votes (repeatable), e.g. a deactivated annotator's",
        )

    def handle(self, *args, **options) -> None:
        campaign = Campaign.objects.filter(pk=options["campaign"]).first()
        if campaign is None:
            raise CommandError(f"No campaign {options['campaign']}.")
        if options["criterion"] is not None:
            try:
                selectors.criterion_of(campaign, options["criterion"])
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from exc
        rows, excluded = pickapic_rows(
            [campaign],
            include_flagged=options["include_flagged"],
            gold_threshold=options["gold_threshold"],
            min_gold=options["min_gold"],
            criterion=options["criterion"],
            exclude_users=options["exclude_user"],
        )
        if not rows:
            raise CommandError(f"Campaign {campaign.pk} has no votes to export.")
        write_parquet(rows, options["out"])
        self.stdout.write(
            json.dumps(
                {
                    "campaign": campaign.pk,
                    "rows": len(rows),
                    "excluded_annotators": sorted(excluded[campaign.pk]),
                    "path": options["out"],
                }
            )
        )
