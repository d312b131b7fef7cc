"""Shared helpers for management commands that start a run: wait with a live progress bar, then
print a one-line JSON summary last so scripts can parse it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from django.core.management.base import CommandError

from core.models import Run
from core.run_states import TERMINAL_STATES, RunState


def add_run_arguments(parser) -> None:
    """``--user`` (recorded as the run's creator) and the waiting options."""
    parser.add_argument("--user", default=None, help=USER_HELP)
    parser.add_argument("--wait", action="store_true", help="block until the run finishes; print a JSON summary last")
    parser.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")
    parser.add_argument("--poll", type=float, default=0.5, help="with --wait: seconds between checks")


USER_HELP = (
    "username recorded as the run's creator (default: $PLATFORM_USER, else your login name if the platform has "
    "such a user, else the first admin)"
)


def acting_user(username: str | None = None):
    """The platform user a command acts as: ``username`` (``--user``), else ``$PLATFORM_USER``, else the OS
    login name when a platform user has it, else the oldest active admin; None only when there is none of these.
    A name given explicitly (option or environment) that matches no user is a CommandError."""
    import getpass

    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(is_active=True)
    explicit = username or os.environ.get("PLATFORM_USER")
    if explicit:
        user = users.filter(username=explicit).first()
        if user is None:
            raise CommandError(f"No active user named {explicit!r}.")
        return user
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = ""
    return (login and users.filter(username=login).first()) or users.filter(is_superuser=True).order_by("pk").first()


def run_summary(run: Run) -> dict[str, Any]:
    return {
        "run": run.pk,
        "kind": run.kind,
        "state": run.state,
        "attempts": run.attempts,
        "result": run.result,
        "error": run.error.splitlines()[0] if run.error else None,
    }


def wait_for_run(run_id: int, *, timeout: float | None = None, poll: float = 0.5, stream=None) -> Run:
    """Poll the run until it is finished, drawing a tqdm progress bar on ``stream`` (stderr)."""
    from tqdm import tqdm

    stream = stream or sys.stderr
    deadline = None if timeout is None else time.monotonic() + timeout
    with tqdm(
        total=100,
        desc=f"run {run_id}",
        unit="%",
        file=stream,
        dynamic_ncols=True,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
    ) as bar:
        while True:
            run = Run.objects.get(pk=run_id)
            bar.n = round(run.progress * 100, 1)
            bar.set_postfix_str(f"{run.state} {run.progress_message}".strip())
            bar.refresh()
            if run.state in TERMINAL_STATES:
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise CommandError(f"Run {run_id} is still {run.state} after {timeout} s (it keeps running).")
            time.sleep(poll)


def start_run(command, *, kind: str, config: dict, options: dict) -> None:
    """Create a run of ``kind`` as ``--user``, then wait and print its summary as the options ask."""
    from rest_framework.exceptions import ValidationError

    from core import services

    user = acting_user(options["user"])
    try:
        run = services.run_create(kind=kind, config=config, created_by=user)
    except ValidationError as exc:
        raise CommandError(f"Invalid {kind} config: {exc.detail}") from exc
    command.stderr.write(f"started {kind} run {run.pk} on queue {run.queue}")
    finish_command(command, run, wait=options["wait"], timeout=options["timeout"], poll=options["poll"])


def finish_command(command, run: Run, *, wait: bool, timeout: float | None, poll: float) -> None:
    """Wait if asked, print the JSON summary as the last line, and fail the command if the run failed."""
    if wait:
        run = wait_for_run(run.pk, timeout=timeout, poll=poll)
    command.stdout.write(json.dumps(run_summary(run), sort_keys=True, default=str))
    if wait and run.state != RunState.SUCCEEDED:
        raise CommandError(f"Run {run.pk} ended {run.state}: {run.error or 'see its page'}", returncode=1)
