"""Export a campaign's votes as Pick-a-Pic-schema Parquet (ties 0.5/0.5; skips and flagged annotators left out)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from feedback import selectors
from feedback.models import Campaign, Choice, Vote
from feedback.pickapic import PickapicRow, write_parquet


def _read(image) -> bytes:
    with image.file.open("rb") as handle:
        return handle.read()


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

    def handle(self, *args, **options) -> None:
        campaign = Campaign.objects.filter(pk=options["campaign"]).first()
        if campaign is None:
            raise CommandError(f"No campaign {options['campaign']}.")
        flagged = (
            set()
            if options["include_flagged"]
            else selectors.flagged_annotators(
                campaign, threshold=options["gold_threshold"], min_gold=options["min_gold"]
            )
        )
        votes = (
            Vote.objects.filter(pair__campaign=campaign, pair__is_gold=False)
            .exclude(choice=Choice.SKIP)
            .exclude(annotator__username__in=flagged)
            .select_related(
                "annotator",
                "pair__image_a__prompt",
                "pair__image_a__model_version__base_model",
                "pair__image_b__model_version__base_model",
                "pair__image_b",
            )
            .order_by("id")
        )
        rows = []
        for vote in votes:
            a, b = vote.pair.image_a, vote.pair.image_b
            rows.append(
                PickapicRow.from_choice(
                    vote.choice,
                    caption=a.prompt.text,
                    jpg_0=_read(a),
                    jpg_1=_read(b),
                    image_0_uid=a.sha256,
                    image_1_uid=b.sha256,
                    model_0=str(a.model_version),
                    model_1=str(b.model_version),
                    user_id=vote.annotator_id,
                    ranking_id=vote.pk,
                    created_at=vote.created_at,
                )
            )
        if not rows:
            raise CommandError(f"Campaign {campaign.pk} has no votes to export.")
        write_parquet(rows, options["out"])
        self.stdout.write(
            json.dumps(
                {
                    "campaign": campaign.pk,
                    "rows": len(rows),
                    "excluded_annotators": sorted(flagged),
                    "path": options["out"],
                }
            )
        )
