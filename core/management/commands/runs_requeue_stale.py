"""Re-dispatch runs whose worker stopped sending heartbeats (after a crash or a lost machine)."""

from django.core.management.base import BaseCommand

from core import services


class Command(BaseCommand):
    help = "Re-dispatch running runs whose heartbeat is older than RUN_STALE_AFTER_SECONDS."

    def handle(self, *args, **options) -> None:
        requeued = services.runs_requeue_stale()
        self.stdout.write(f"re-dispatched {len(requeued)} run(s): {requeued}")
