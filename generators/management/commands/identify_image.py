"""Say which version, prompt and seed made an image: ``manage.py identify_image FILE [--json]``."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generators import provenance


class Command(BaseCommand):
    help = (
        "Identify a generated image from its PNG metadata, else its invisible watermark; "
        "prints the version, prompt and seed and how the image was recognised (exit 1 if not identified)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="an image file (PNG, JPEG, WebP...)")
        parser.add_argument("--json", action="store_true", help="print the answer as JSON")

    def handle(self, *args, **options) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        try:
            image = provenance.open_image(path, max_pixels=settings.PROVENANCE_MAX_PIXELS)
        except provenance.UnreadableImage as exc:
            raise CommandError(str(exc)) from exc
        result = provenance.identify(image)
        self.stdout.write(json.dumps(result, indent=2) if options["json"] else provenance.describe(result))
        if not result["identified"]:
            raise CommandError("Not identified.", returncode=1)
