"""Start a diagnostic run (worker health check): ``manage.py diagnostic --steps 20 --wait``."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from core.cli import add_run_arguments, start_run


class Command(BaseCommand):
    help = "Start a diagnostic run on the gpu queue; with --wait, show progress and print a JSON summary last."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--steps", type=int, default=10)
        parser.add_argument("--step-seconds", type=float, default=0.2)
        parser.add_argument("--matrix-size", type=int, default=256)
        parser.add_argument("--device", default="auto")
        add_run_arguments(parser)

    def handle(self, *args, **options) -> None:
        config = {key: options[key] for key in ("steps", "step_seconds", "matrix_size", "device")}
        start_run(self, kind="diagnostic", config=config, options=options)
