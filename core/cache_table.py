"""The database cache's table is made by ``migrate``: no extra step in the README, CI or a deployment.

``createcachetable`` after every migrate (it skips tables that exist) also covers switching ``CACHES`` from
Redis to the database later. With Redis (``CACHE_URL``) it does nothing.
"""

from __future__ import annotations

from django.core.management import call_command


def create_cache_table(sender, *, using: str, **kwargs) -> None:
    """``post_migrate`` receiver: create the database cache's table on the migrated database if missing."""
    call_command("createcachetable", database=using, verbosity=0)
