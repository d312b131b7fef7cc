"""Start a diagnostic run (worker health check): ``manage.py diagnostic --steps 20 --wait``."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.exceptions import ValidationError

from core import services
from core.cli import add_wait_arguments, finish_command


class Command(BaseCommand):
    help = "Start a diagnostic run on the gpu queue; with --wait, show progress and print a JSON summary last."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--steps", type=int, default=10)
        parser.add_argument("--step-seconds", type=float, default=0.2)
        parser.add_argument("--matrix-size", type=int, default=256)
        parser.add_argument("--device", default="auto")
        parser.add_argument("--user", default=None, help="username recorded as the run's creator")
        add_wait_arguments(parser)

    def handle(self, *args, **options) -> None:
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user named {options['user']!r}.")
        config = {
            "steps": options["steps"],
            "step_seconds": options["step_seconds"],
            "matrix_size": options["matrix_size"],
            "device": options["device"],
        }
        try:
            run = services.run_create(kind="diagnostic", config=config, created_by=user)
        except ValidationError as exc:
            raise CommandError(f"Invalid diagnostic config: {exc.detail}") from exc
        self.stderr.write(f"started run {run.pk} on queue {run.queue}")
        finish_command(self, run, wait=options["wait"], timeout=options["timeout"], poll=options["poll"])
