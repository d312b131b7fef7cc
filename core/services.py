"""Every write to runs, metrics and artifacts. Keyword-only functions named ``<entity>_<verb>``.

Writes made on behalf of a worker are *fenced* by the attempt number, in the database: each one runs
in a transaction that first updates the run's row on the condition that the writer's attempt is still
the run's attempt and the run is still running (or cancelling). That update holds the row lock until
the write commits, so a take-over (:func:`run_claim` locks the same row) waits for it, and once a run
has been claimed again, the old attempt's progress, metrics, artifacts, checkpoints and outcome are
refused with :class:`~core.jobs.AttemptSuperseded`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core import people, run_kinds
from core.events import send_run_finished
from core.jobs import AttemptSuperseded
from core.models import AnnotatorGroup, Artifact, Invite, MetricPoint, Run
from core.roles import Role
from core.run_states import TERMINAL_STATES, RunState, check_transition
from core.uniqueness import create_named

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint"


@dataclass(frozen=True)
class Claim:
    run: Run
    attempt: int

    @property
    def resumed(self) -> bool:
        return self.attempt > 1


def _record(run: Run, state: str, note: str = "") -> None:
    """Move ``run`` to ``state`` (checked) and append the change to its history (caller saves)."""
    if state != run.state:
        check_transition(run.pk, run.state, state)
    run.state = state
    if state in TERMINAL_STATES:
        transaction.on_commit(lambda: send_run_finished(run, state))
    run.state_history = [
        *run.state_history,
        {"state": state, "at": timezone.now().isoformat(), "attempt": run.attempts, "note": note},
    ]


# --- Creating and dispatching --------------------------------------------------------------------


def run_create(*, kind: str, config: Mapping[str, Any] | None, created_by=None, max_attempts: int = 3) -> Run:
    """Validate ``config`` for ``kind``, store a queued run and dispatch it once the transaction commits."""
    run_kind = run_kinds.get(kind)
    validated = run_kind.validate_config(dict(config or {}))
    with transaction.atomic():
        run = Run(kind=kind, config=validated, queue=run_kind.queue, created_by=created_by, max_attempts=max_attempts)
        _record(run, RunState.QUEUED, note=f"created by {created_by}" if created_by else "created")
        run.save()
        run_dispatch(run=run)
    return run


def run_dispatch(*, run: Run) -> str:
    """Send the run's id to its queue after the current transaction commits; returns the task id."""
    from core.tasks import execute_run

    task_id = str(uuid.uuid4())
    Run.objects.filter(pk=run.pk).update(celery_task_id=task_id)
    run.celery_task_id = task_id
    transaction.on_commit(lambda: execute_run.apply_async(args=[run.pk], queue=run.queue, task_id=task_id))
    return task_id


# --- Claiming (the worker side) ------------------------------------------------------------------


def _is_stale(run: Run, now) -> bool:
    limit = timedelta(seconds=settings.RUN_STALE_AFTER_SECONDS)
    return run.heartbeat_at is None or now - run.heartbeat_at > limit


def run_claim(*, run_id: int, worker: str) -> Claim | None:
    """Take a run for execution, or return None when there is nothing to do.

    A queued run starts its first attempt. A running run whose heartbeat went stale (its worker
    died) is taken over as a new attempt; a running run with a live heartbeat belongs to another
    worker and a duplicate delivery is dropped. Finished runs are never run again.
    """
    now = timezone.now()
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            log.warning("run %s does not exist; dropping its task", run_id)
            return None
        if run.state == RunState.QUEUED:
            run.attempts += 1
            _record(run, RunState.RUNNING, note=f"claimed by {worker}")
            run.started_at = now
        elif run.state in (RunState.RUNNING, RunState.CANCELLING):
            if not _is_stale(run, now):
                log.info("run %s is live on %s; dropping duplicate delivery", run_id, run.worker)
                return None
            lost = f"worker {run.worker or '?'} stopped responding during attempt {run.attempts}"
            if run.state == RunState.CANCELLING:
                _record(run, RunState.CANCELLED, note=f"{lost}; the cancel is complete")
                run.finished_at = now
                run.save()
                return None
            if run.attempts >= run.max_attempts:
                _record(run, RunState.FAILED, note=lost)
                run.error = f"Gave up after {run.attempts} attempts: {lost}."
                run.finished_at = now
                run.save()
                return None
            run.attempts += 1
            _record(run, RunState.RUNNING, note=f"{lost}; resumed by {worker}")
        else:
            log.info("run %s is %s; nothing to do", run_id, run.state)
            return None
        run.worker = worker
        run.heartbeat_at = now
        run.save()
    return Claim(run=run, attempt=run.attempts)


def _fenced(run_id: int, attempt: int):
    return Run.objects.filter(pk=run_id, attempts=attempt, state__in=(RunState.RUNNING, RunState.CANCELLING))


def _superseded(run_id: int, attempt: int) -> AttemptSuperseded:
    return AttemptSuperseded(f"run {run_id}: attempt {attempt} no longer holds the run")


def _hold_fence(run_id: int, attempt: int) -> None:
    """Inside a transaction: lock the run's row while ``attempt`` holds it (and mark it alive), else raise.

    The conditional UPDATE keeps the row locked until the caller's transaction ends, so the write that
    follows it in the same transaction commits before any take-over, or not at all.
    """
    if not _fenced(run_id, attempt).update(heartbeat_at=timezone.now()):
        raise _superseded(run_id, attempt)


@contextmanager
def run_fenced(*, run_id: int, attempt: int) -> Iterator[None]:
    """A transaction that commits only while ``attempt`` holds the run: a job's own rows (a new version, a reward
    model, a dataset's outcome) are written inside it, so a superseded attempt that wakes up writes nothing
    (:class:`~core.jobs.AttemptSuperseded`)."""
    with transaction.atomic():
        _hold_fence(run_id, attempt)
        yield


def run_heartbeat(*, run_id: int, attempt: int) -> str | None:
    """Mark the attempt alive; returns the run's state, or None when the attempt lost its lease."""
    if not _fenced(run_id, attempt).update(heartbeat_at=timezone.now()):
        return None
    return Run.objects.filter(pk=run_id).values_list("state", flat=True).first()


def run_report_progress(*, run_id: int, attempt: int, fraction: float, message: str = "") -> None:
    """Record progress (clamped to 0..1) and refresh the heartbeat."""
    fraction = min(1.0, max(0.0, float(fraction))) if math.isfinite(fraction) else 0.0
    updated = _fenced(run_id, attempt).update(
        progress=fraction, progress_message=message[:200], heartbeat_at=timezone.now()
    )
    if not updated:
        raise _superseded(run_id, attempt)


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def metrics_log(*, run_id: int, attempt: int, step: int, values: Mapping[str, float]) -> None:
    """Upsert metric points of ``attempt`` (fenced): (run, key, step) is unique, so a retried step overwrites,
    never duplicates."""
    points = [
        MetricPoint(run_id=run_id, attempt=attempt, key=str(key)[:100], step=int(step), value=_finite_or_none(value))
        for key, value in values.items()
    ]
    with transaction.atomic():
        _hold_fence(run_id, attempt)
        if points:
            MetricPoint.objects.bulk_create(
                points,
                update_conflicts=True,
                unique_fields=["run", "key", "step"],
                update_fields=["value", "attempt", "recorded_at"],
            )


# --- Artifacts and checkpoints -------------------------------------------------------------------


def artifact_save(
    *, run: Run, attempt: int, name: str, data: bytes, kind: str, metadata: Mapping[str, Any] | None = None
) -> Artifact:
    """Store ``data`` as the run's artifact ``name`` (fenced by ``attempt``); saving the name again replaces it.

    The file is written under a path of its own (attempt and content hash) before the row is switched
    to it under the fence, and the old file is removed only after the switch commits, so a crash never
    leaves a row pointing at a missing or half-written file, and a superseded attempt never replaces
    the new attempt's file (its own file is removed). Saving identical bytes again changes nothing.
    """
    digest = hashlib.sha256(data).hexdigest()
    path = f"runs/{run.pk}/a{attempt}-{digest[:16]}-{name}"
    wrote_file = not default_storage.exists(path)  # this attempt may have stored these bytes already
    if wrote_file:
        path = default_storage.save(path, ContentFile(data))
    try:
        with transaction.atomic():
            _hold_fence(run.pk, attempt)
            artifact = Artifact.objects.select_for_update().filter(run=run, name=name).first()
            if artifact is not None and artifact.sha256 == digest:  # identical bytes: the row stays as it is
                new_file_used = artifact.file.name == path
            else:
                new_file_used = True
                old_path = artifact.file.name if artifact is not None else None
                artifact = artifact or Artifact(run=run, name=name)
                artifact.kind, artifact.file, artifact.sha256, artifact.attempt = kind, path, digest, attempt
                artifact.size, artifact.metadata = len(data), dict(metadata or {})
                artifact.save()
                if old_path and old_path != path:
                    transaction.on_commit(lambda: default_storage.delete(old_path))
    except AttemptSuperseded:
        if wrote_file:
            default_storage.delete(path)
        raise
    if wrote_file and not new_file_used:
        default_storage.delete(path)
    return artifact


def checkpoint_save(*, run: Run, attempt: int, payload: bytes) -> Artifact:
    """Replace the run's resume state (fenced by ``attempt``, like every artifact)."""
    return artifact_save(run=run, attempt=attempt, name=CHECKPOINT_NAME, data=payload, kind="checkpoint")


def checkpoint_load(*, run_id: int) -> bytes | None:
    artifact = Artifact.objects.filter(run_id=run_id, name=CHECKPOINT_NAME).first()
    if artifact is None:
        return None
    with artifact.file.open("rb") as handle:
        return handle.read()


# --- Finishing -----------------------------------------------------------------------------------


def _lock_for_attempt(run_id: int, attempt: int) -> Run:
    run = Run.objects.select_for_update().get(pk=run_id)
    if run.attempts != attempt:
        raise AttemptSuperseded(f"run {run_id}: attempt {attempt} was superseded by attempt {run.attempts}")
    if run.state not in (RunState.RUNNING, RunState.CANCELLING):
        raise AttemptSuperseded(f"run {run_id}: attempt {attempt} no longer holds the run, which is {run.state}")
    return run


def run_succeed(*, run_id: int, attempt: int, result: Mapping[str, Any]) -> Run:
    """The atomic switch to ``succeeded``; artifacts must already be written."""
    with transaction.atomic():
        run = _lock_for_attempt(run_id, attempt)
        _record(run, RunState.SUCCEEDED)
        run.result, run.progress, run.finished_at = dict(result), 1.0, timezone.now()
        run.save()
    return run


def run_fail(*, run_id: int, attempt: int | None, error: str) -> Run:
    """Mark the run failed with a readable error (``attempt`` None: not fenced, e.g. a dispatch failure)."""
    with transaction.atomic():
        run = (
            _lock_for_attempt(run_id, attempt)
            if attempt is not None
            else Run.objects.select_for_update().get(pk=run_id)
        )
        _record(run, RunState.FAILED, note=error.splitlines()[0][:200] if error else "")
        run.error, run.finished_at = error, timezone.now()
        run.save()
    return run


def run_mark_cancelled(*, run_id: int, attempt: int, note: str = "") -> Run:
    """The worker stopped at a cancel request: ``cancelling`` → ``cancelled``."""
    with transaction.atomic():
        run = _lock_for_attempt(run_id, attempt)
        _record(run, RunState.CANCELLED, note=note)
        run.finished_at = timezone.now()
        run.save()
    return run


def run_request_cancel(*, run_id: int, requested_by=None) -> Run:
    """Ask a run to stop. Queued runs are cancelled at once; running ones move to ``cancelling``
    and stop at the job's next check. Asking again while cancelling changes nothing.
    """
    who = f"requested by {requested_by}" if requested_by else "requested"
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.state == RunState.CANCELLING:
            return run
        if run.state == RunState.QUEUED:
            _record(run, RunState.CANCELLED, note=f"cancel {who} before start")
            run.finished_at = timezone.now()
        else:
            _record(run, RunState.CANCELLING, note=f"cancel {who}")
        run.save()
    return run


def runs_requeue_stale() -> list[int]:
    """Re-dispatch runs whose worker went silent (crash, SIGKILL, lost machine).

    Every worker calls this periodically (see ``core.signals``), and so can an operator
    (``manage.py runs_requeue_stale``). A conditional update on ``redispatched_at`` lets only one
    caller per stale period send the run again; the broker may also redeliver it, and
    :func:`run_claim` makes any duplicate harmless.
    """
    now = timezone.now()
    limit = now - timedelta(seconds=settings.RUN_STALE_AFTER_SECONDS)
    candidates = Run.objects.filter(state__in=(RunState.RUNNING, RunState.CANCELLING), heartbeat_at__lt=limit).filter(
        Q(redispatched_at__isnull=True) | Q(redispatched_at__lt=limit)
    )
    requeued = []
    for run in candidates:
        with transaction.atomic():
            won = (
                Run.objects.filter(pk=run.pk, heartbeat_at__lt=limit)
                .filter(Q(redispatched_at__isnull=True) | Q(redispatched_at__lt=limit))
                .update(redispatched_at=now)
            )
            if won:
                run_dispatch(run=run)
                requeued.append(run.pk)
        if won:
            log.warning("re-dispatched stale run %s (last heartbeat %s on %s)", run.pk, run.heartbeat_at, run.worker)
    return requeued


# --- Accounts (who may: core.people) ----------------------------------------------------------------


def user_create(*, username: str, password: str, roles) -> object:
    """A new active user in the groups of ``roles`` (checks of name and password are the caller's serializer's)."""
    try:
        with transaction.atomic():
            user = get_user_model().objects.create_user(username=username, password=password)
            for role in roles:
                group, _ = Group.objects.get_or_create(name=Role(role).value)
                user.groups.add(group)
    except IntegrityError as exc:  # a concurrent request took the name after the serializer's check
        raise ValidationError({"username": [f"A user named {username!r} already exists."]}) from exc
    return user


def user_set_active(*, user, active: bool) -> object:
    """Deactivate or reactivate ``user``; their votes and assignments stay."""
    if user.is_active != active:
        user.is_active = active
        user.save(update_fields=["is_active"])
    return user


def annotator_group_create(*, name: str, members=()) -> AnnotatorGroup:
    """A new annotator group (a taken name answers 400 naming it)."""

    def create() -> AnnotatorGroup:
        group = AnnotatorGroup.objects.create(name=name)
        group.members.add(*members)
        return group

    return create_named(AnnotatorGroup, name, "group", create)


def annotator_group_members_change(*, group: AnnotatorGroup, add=(), remove=()) -> AnnotatorGroup:
    """Add ``add`` to and remove ``remove`` from ``group`` (campaigns created earlier keep their annotators)."""
    with transaction.atomic():
        group.members.add(*add)
        group.members.remove(*remove)
    return group


# --- Invite links (tokens and states: core.people) -----------------------------------------------------------------


class InviteUnusable(Exception):
    """An invite link that cannot make an account (unknown, used, withdrawn or expired); the message says so to the
    person holding it."""


def invite_create(
    *, created_by, group: AnnotatorGroup | None = None, days: float = people.INVITE_DAYS, note: str = ""
) -> tuple[Invite, str]:
    """A new single-use invite link for an annotator, valid ``days``; returns it and its token (only the token's
    hash is stored: the caller shows the link once)."""
    token = people.invite_token()
    now = timezone.now()
    invite = Invite(
        token_hash=people.invite_token_hash(token),
        group=group,
        note=note,
        created_by=created_by,
        expires_at=now + timedelta(days=days),
    )
    invite.save()
    return invite, token


def invite_accept(*, token: str, username: str, password: str) -> object:
    """The invite's annotator account, named and with the password its holder chose, in the invite's group; the
    invite is used up in the same transaction (two holders racing for one link: one account).

    Raises :class:`InviteUnusable` for a link that cannot make an account, ``ValidationError`` on ``username``
    when the name was taken meanwhile (the caller's form checks names and passwords first)."""
    now = timezone.now()
    with transaction.atomic():
        invite = Invite.objects.select_for_update().filter(token_hash=people.invite_token_hash(token)).first()
        problem = people.invite_problem(invite, now)
        if problem:
            raise InviteUnusable(problem)
        user = user_create(username=username, password=password, roles=[people.INVITE_ROLE])
        if invite.group is not None:
            invite.group.members.add(user)
        used = Invite.objects.filter(pk=invite.pk, used_at__isnull=True, revoked_at__isnull=True).update(
            used_at=now, used_by=user
        )
        if not used:  # taken by a concurrent acceptance (databases without row locks): make no second account
            raise InviteUnusable(people.invite_problem(Invite.objects.get(pk=invite.pk), now))
    return user


def invite_revoke(*, invite: Invite) -> Invite:
    """Withdraw an invite that was not used (a used one answers 409 from the caller: the account exists)."""
    Invite.objects.filter(pk=invite.pk, used_at__isnull=True, revoked_at__isnull=True).update(revoked_at=timezone.now())
    invite.refresh_from_db()
    return invite
