"""gunicorn settings, read automatically when gunicorn starts in the project root (``gunicorn config.wsgi``).

Command-line options still choose workers and threads (README: ``-k gthread --workers <cores> --threads 16``).
"""

from __future__ import annotations

import gc


def post_worker_init(worker) -> None:
    """Import every view now, then move all start-up objects out of the garbage collector's sight.

    A worker holds about 130,000 long-lived objects after start-up (Django, DRF, torch's Python side). Python's
    full collections walk them all: 40–66 ms each here, during which every thread of the worker stalls, which
    lands in the annotators' p99 latency. Frozen objects are never scanned (``gc.freeze``), so requests pay only
    for what they allocate (``docs/benchmarks.md``, vote load).
    """
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - loading the URLconf imports every view
    gc.collect()
    gc.freeze()
    worker.log.info("froze %d start-up objects out of garbage collection", gc.get_freeze_count())
