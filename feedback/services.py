"""Every write of the feedback app: campaigns, their pairs, votes."""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from core import hot_sql
from core import services as runs
from core.api_errors import Conflict
from core.hot_sql import as_aware_datetime, db_datetime, for_update
from core.run_states import TERMINAL_STATES, RunState
from core.uniqueness import create_named
from feedback import safety
from feedback.blocklist import BlocklistError, normalise_terms
from feedback.criteria import CriteriaError, answers_for, criteria_of, default_questions, validate_questions
from feedback.models import (
    REFIT_EVERY_RANGE,
    Assignment,
    AssignmentStatus,
    Campaign,
    CampaignStatus,
    Choice,
    Pair,
    Purpose,
    Selection,
    Vote,
)
from feedback.preview import campaign_shape, pairs_of_images, prompt_ids_kept
from generators import selectors as generator_selectors
from generators.models import GeneratedImage, ModelVersion, PromptSet
from generators.safety_screens import ScreenError, check_screen_name
from generators.sampler_settings import SettingsRequest
from generators.selectors import ImageKey, images_for

log = logging.getLogger(__name__)

SUBMITTED_CHOICES = ("left", "right", "tie", "both_bad", "skip")


def campaign_create(
    *,
    name: str,
    purpose: str,
    prompt_set: PromptSet,
    model_versions: Iterable[ModelVersion],
    annotators: Iterable = (),
    votes_per_pair: int = 3,
    gold_rate: float = 0.0,
    lease_seconds: int = 300,
    images_per_prompt: int | None = None,
    sampler_settings: SettingsRequest | None = None,
    selection: str = Selection.RANDOM,
    refit_every: int = 200,
    questions: Sequence[Mapping[str, str]] | None = None,
    blocked_terms: Sequence[str] = (),
    safety_screen: str = "",
    created_by=None,
    open_now: bool = True,
) -> Campaign:
    """Create a campaign and, with ``open_now``, open it (generating its missing images first).

    ``sampler_settings``: the settings its images are made with (default: each version's defaults); pairs are
    only built from images of these settings, and the generation run it starts uses them. ``selection``: the
    hand-out order of pairs without votes (``uncertainty``: by the priorities the refit job writes every
    ``refit_every`` valid votes; see ``feedback/handout.py``). ``questions``: the 1-4 questions asked about each
    pair (``{key, text}``; default: the one question of ``feedback.criteria``), checked by
    :func:`feedback.criteria.validate_questions`. ``blocked_terms``: prompts containing one are left out
    (``feedback/blocklist.py``); ``safety_screen``: a registered screen that checks every image before the
    campaign opens (its generation run does; flagged images are withheld, see ``feedback/safety.py``).
    """
    try:
        questions = default_questions() if questions is None else validate_questions(questions)
    except CriteriaError as exc:
        raise ValidationError({exc.field: [str(exc)]}) from None
    try:
        blocked_terms = normalise_terms(blocked_terms)
    except BlocklistError as exc:
        raise ValidationError({"blocked_terms": [str(exc)]}) from None
    if safety_screen:
        try:
            check_screen_name(safety_screen)
        except ScreenError as exc:
            raise ValidationError({"safety_screen": [str(exc)]}) from None
    prompt_ids_kept(prompt_set, blocked_terms)  # a blocklist that leaves no prompt is a 400 now, not a draft later
    if selection not in Selection.values:
        raise ValidationError({"selection": [f"Choose one of {', '.join(Selection.values)}."]})
    if not REFIT_EVERY_RANGE[0] <= refit_every <= REFIT_EVERY_RANGE[1]:
        raise ValidationError({"refit_every": [f"Between {REFIT_EVERY_RANGE[0]} and {REFIT_EVERY_RANGE[1]} votes."]})
    versions = list(model_versions)
    images_per_prompt = campaign_shape(purpose=purpose, versions=versions, images_per_prompt=images_per_prompt)
    return create_named(
        Campaign,
        name,
        "campaign",
        lambda: _campaign_insert(
            name=name,
            purpose=purpose,
            prompt_set=prompt_set,
            versions=versions,
            annotators=annotators,
            votes_per_pair=votes_per_pair,
            gold_rate=gold_rate,
            lease_seconds=lease_seconds,
            images_per_prompt=images_per_prompt,
            sampler_settings=(sampler_settings or SettingsRequest()).as_config(),
            selection=selection,
            refit_every=refit_every,
            questions=questions,
            blocked_terms=blocked_terms,
            safety_screen=safety_screen,
            created_by=created_by,
            open_now=open_now,
        ),
    )


def _campaign_insert(*, versions, annotators, open_now: bool, **fields) -> Campaign:
    campaign = Campaign.objects.create(**fields)
    campaign.model_versions.set(versions)
    campaign.annotators.set(list(annotators))
    if open_now:
        campaign_open(campaign=campaign, started_by=fields.get("created_by"))
    return campaign


def campaign_settings(campaign: Campaign) -> SettingsRequest:
    """The sampler settings of the campaign's images."""
    return SettingsRequest.from_config(campaign.sampler_settings)


def _prompt_ids(campaign: Campaign) -> list[int]:
    """The campaign's prompts: its prompt set's, less those its blocklist leaves out."""
    return prompt_ids_kept(campaign.prompt_set, campaign.blocked_terms)[0]


def _images_of(campaign: Campaign) -> dict[ImageKey, GeneratedImage]:
    """The image of each (version, kept prompt, seed < images_per_prompt) of the campaign under its settings."""
    return images_for(
        campaign.model_versions.values_list("pk", flat=True),
        _prompt_ids(campaign),
        range(campaign.images_per_prompt),
        campaign_settings(campaign),
    )


def _pairs_for(campaign: Campaign, images: dict[ImageKey, GeneratedImage]) -> list[tuple[int, int]]:
    """Image pairs: across versions for the same prompt and seed, or two seeds of one version."""
    return pairs_of_images(list(campaign.model_versions.order_by("id").values_list("pk", flat=True)), images)


def _missing_image_count(campaign: Campaign, images: dict[ImageKey, GeneratedImage]) -> int:
    """How many (version, kept prompt, seed < images_per_prompt) images the campaign lacks under its settings."""
    versions = campaign.model_versions.count()
    return versions * len(_prompt_ids(campaign)) * campaign.images_per_prompt - len(images)


def _unscreened_count(campaign: Campaign, images: dict[ImageKey, GeneratedImage]) -> int:
    """How many of the campaign's images its safety screen has not checked yet (0 without a screen)."""
    if not campaign.safety_screen:
        return 0
    return len(generator_selectors.unscreened([image.pk for image in images.values()], campaign.safety_screen))


def _create_pairs(campaign: Campaign, pairs: Iterable[tuple[int, int]]) -> None:
    """Insert the campaign's pairs; those that show a withheld image (reported, or flagged by the campaign's
    screen now) are created withdrawn."""
    pairs = list(pairs)
    if campaign.safety_screen:
        shown = {image for pair in pairs for image in pair}
        flagged = generator_selectors.screen_flags(shown, campaign.safety_screen)
        safety.image_flags_from_screen(screen=campaign.safety_screen, flagged=flagged, campaign_id=campaign.pk)
    withheld = safety.withheld_images()
    Pair.objects.bulk_create(
        [
            Pair(campaign=campaign, image_a_id=a, image_b_id=b, withdrawn=a in withheld or b in withheld)
            for a, b in pairs
        ]
    )


def campaign_reopen(*, campaign_id: int, started_by=None) -> Campaign:
    """Open a draft or closed campaign again (engineers, from its page or ``POST campaigns/<id>/open/``): a closed
    one that has pairs opens at once with its votes kept; one without pairs is prepared as :func:`campaign_open`
    does. An open campaign stays open; a preparing one is refused (its generation run opens it)."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status == CampaignStatus.PREPARING:
            raise Conflict("The campaign is preparing: its generation run opens it when the images are made.")
        if campaign.status != CampaignStatus.OPEN:
            campaign_open(campaign=campaign, started_by=started_by)
        return campaign


def campaign_close(*, campaign_id: int) -> Campaign:
    """Close a campaign: nothing more is handed out (leases already given may still be answered); its pairs and
    votes are kept and :func:`campaign_reopen` opens it again, so closing also serves as a pause. A preparing
    campaign stays closed when its images are made."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status != CampaignStatus.CLOSED:
            campaign.status, campaign.status_note = CampaignStatus.CLOSED, ""
            campaign.save(update_fields=["status", "status_note"])
        return campaign


def campaign_open(*, campaign: Campaign, started_by=None) -> Campaign:
    """Open the campaign for annotators, building its pairs first.

    When images are missing, a ``generate`` run for them is started instead and the campaign waits
    in ``preparing``; it opens when that run succeeds (see :func:`campaign_preparation_finished`).
    """
    update = ["status"]
    if not campaign.pairs.exists():
        images = _images_of(campaign)
        missing = _missing_image_count(campaign, images)
        unscreened = _unscreened_count(campaign, images)
        if missing or unscreened:
            return _campaign_prepare(campaign, missing, unscreened, started_by)
        pairs = _pairs_for(campaign, images)
        if not pairs:
            raise ValidationError({"model_versions": ["These versions and prompts give no pair of images to compare."]})
        _create_pairs(campaign, pairs)
        campaign.sampler_settings, update = _with_precision_of(campaign, images), [*update, "sampler_settings"]
    campaign.status, campaign.status_note = CampaignStatus.OPEN, ""
    campaign.save(update_fields=[*update, "status_note"])
    return campaign


def _with_precision_of(campaign: Campaign, images: dict[ImageKey, GeneratedImage]) -> dict:
    """The campaign's settings with ``dtype`` fixed to its images' precision (``images_for`` returns one), so
    later readers (gallery, evaluate) pick the very images its pairs hold."""
    image = next(iter(images.values()))
    return campaign_settings(campaign).with_dtype(image.settings["dtype"]).as_config()


def _campaign_prepare(campaign: Campaign, missing: int, unscreened: int, started_by) -> Campaign:
    """Start the ``generate`` run that makes the campaign's missing images (only its kept prompts') and, with a
    safety screen, screens them all; the campaign waits in ``preparing``."""
    config = {
        "model_versions": list(campaign.model_versions.order_by("id").values_list("pk", flat=True)),
        "prompt_set": campaign.prompt_set_id,
        "images_per_prompt": campaign.images_per_prompt,
        "seed": 0,
        **campaign.sampler_settings,
    }
    blocked = prompt_ids_kept(campaign.prompt_set, campaign.blocked_terms)[1]
    if blocked:
        config["exclude_prompts"] = sorted(blocked)
    if campaign.safety_screen:
        config["safety_screen"] = campaign.safety_screen
    run = runs.run_create(kind="generate", config=config, created_by=started_by)
    log.info(
        "campaign %s: generation run %s started (%d images missing, %d unscreened)",
        campaign.pk,
        run.pk,
        missing,
        unscreened,
    )
    campaign.status, campaign.preparing_run = CampaignStatus.PREPARING, run
    work = [f"make {missing} missing images"] if missing else []
    if campaign.safety_screen:
        work.append(
            f"screen them with {campaign.safety_screen}"
            if missing
            else f"screen {unscreened} images with {campaign.safety_screen}"
        )
    campaign.status_note = f"waiting for generation run {run.pk} to {' and '.join(work)}"
    campaign.save(update_fields=["status", "preparing_run", "status_note"])
    return campaign


def campaign_preparation_finished(*, run) -> list[Campaign]:
    """Open the campaigns that waited for ``run``'s images, or return them to draft with the reason (the run did
    not succeed, or its images still make no campaign). Idempotent: only campaigns still preparing change.
    """
    campaigns = []
    waiting = Campaign.objects.filter(preparing_run=run, status=CampaignStatus.PREPARING)
    for campaign_id in waiting.values_list("pk", flat=True):
        with transaction.atomic():
            campaign = waiting.select_for_update().filter(pk=campaign_id).first()
            if campaign is None:  # settled meanwhile by another process (the event or the reconciliation)
                continue
            reason = _preparation_failure(campaign, run)
            if reason is None:
                try:
                    with transaction.atomic():
                        campaign_open(campaign=campaign)
                except ValidationError as exc:
                    reason = " ".join(exc.messages)
            if reason is not None:
                _campaign_back_to_draft(campaign, reason)
        campaigns.append(campaign)
    return campaigns


def _preparation_failure(campaign: Campaign, run) -> str | None:
    """Why ``run`` did not make the campaign's images, or None when it did."""
    if run.state != RunState.SUCCEEDED:
        error = run.error.strip().splitlines()[0] if run.error.strip() else ""
        return f"Its generation run {run.pk} ended {run.state}" + (f": {error}" if error else ".")
    images = _images_of(campaign)
    missing = _missing_image_count(campaign, images)
    if missing:
        return f"Its generation run {run.pk} succeeded but {missing} images are still missing."
    unscreened = _unscreened_count(campaign, images)
    if unscreened:
        return f"Its generation run {run.pk} succeeded but {campaign.safety_screen} did not check {unscreened} images."
    return None


def _campaign_back_to_draft(campaign: Campaign, reason: str) -> None:
    log.warning("campaign %s goes back to draft: %s", campaign.pk, reason)
    campaign.status, campaign.status_note = CampaignStatus.DRAFT, reason[:500]
    campaign.save(update_fields=["status", "status_note"])


def campaigns_reconcile_preparing() -> list[Campaign]:
    """Settle the campaigns still ``preparing`` although their generation run has ended (the ``run_finished``
    receiver failed, or its process died first) or is gone: open them or return them to draft with the reason.
    Every worker calls this periodically (``core.events.periodic_check``).
    """
    stuck = Campaign.objects.filter(status=CampaignStatus.PREPARING).filter(
        Q(preparing_run__isnull=True) | Q(preparing_run__state__in=TERMINAL_STATES)
    )
    settled: list[Campaign] = []
    for campaign in stuck.filter(preparing_run__isnull=True):
        _campaign_back_to_draft(campaign, "Its generation run was deleted before it made the images.")
        settled.append(campaign)
    ended = {campaign.preparing_run_id: campaign.preparing_run for campaign in stuck.select_related("preparing_run")}
    for run in ended.values():
        settled += campaign_preparation_finished(run=run)
    return settled


def campaign_from_pairs(
    *, source: Campaign, pairs: Iterable[Pair], name: str, votes_per_pair: int = 3, created_by=None
) -> Campaign:
    """A new open ``collect`` campaign of exactly these image pairs (e.g. a reward model's mistakes), for the
    source campaign's prompt set, versions and annotators."""
    image_pairs = [(pair.image_a_id, pair.image_b_id) for pair in pairs]
    if not image_pairs:
        raise ValidationError({"pairs": ["No pairs to put in a campaign."]})

    def create() -> Campaign:
        campaign = Campaign.objects.create(
            name=name,
            purpose=Purpose.COLLECT,
            prompt_set=source.prompt_set,
            votes_per_pair=votes_per_pair,
            lease_seconds=source.lease_seconds,
            images_per_prompt=source.images_per_prompt,
            sampler_settings=source.sampler_settings,
            questions=source.questions,
            blocked_terms=source.blocked_terms,
            safety_screen=source.safety_screen,
            created_by=created_by,
            status=CampaignStatus.OPEN,
        )
        campaign.model_versions.set(source.model_versions.all())
        campaign.annotators.set(source.annotators.all())
        _create_pairs(campaign, image_pairs)
        return campaign

    return create_named(Campaign, name, "campaign", create)


def pair_mark_gold(*, pair: Pair, choice: str) -> Pair:
    if choice not in (Choice.A, Choice.B, Choice.TIE):
        raise ValidationError({"choice": ["A gold answer is a, b or tie."]})
    pair.is_gold, pair.gold_choice = True, choice
    pair.save(update_fields=["is_gold", "gold_choice"])
    return pair


PRIORITY_BATCH = 500


def pair_priorities_set(*, campaign_id: int, priorities: Mapping[int, float]) -> int:
    """Write hand-out priorities (pair id → float, higher first; see ``feedback/handout.py``) of the campaign's
    pairs; ids of other campaigns' pairs are ignored. Returns how many pairs were updated.

    Written a batch at a time, each in its own short transaction: the rows a batch locks are ones that votes
    and hand-outs may be waiting for, so no long transaction holds the whole campaign.
    """
    values = {int(pk): float(value) for pk, value in priorities.items()}
    if not all(math.isfinite(value) for value in values.values()):
        raise ValidationError({"priorities": ["Priorities must be finite numbers."]})
    ids, updated = sorted(values), 0
    for start in range(0, len(ids), PRIORITY_BATCH):
        batch = ids[start : start + PRIORITY_BATCH]
        with transaction.atomic():
            mine = Pair.objects.filter(campaign_id=campaign_id, pk__in=batch).values_list("pk", flat=True)
            pairs = [Pair(pk=pk, priority=values[pk]) for pk in mine]
            updated += Pair.objects.bulk_update(pairs, ["priority"])
    return updated


def _to_image_choice(submitted: str, a_on_left: bool) -> str:
    if submitted == "left":
        return Choice.A if a_on_left else Choice.B
    if submitted == "right":
        return Choice.B if a_on_left else Choice.A
    return submitted


def vote_submit(
    *,
    annotator,
    assignment_id: int,
    submitted: str | None = None,
    answers: Mapping[str, str] | None = None,
    seconds: float | None = None,
) -> tuple[Vote, bool]:
    """:func:`vote_submit_answers`, returning the vote on the campaign's first question (one-question campaigns:
    the vote)."""
    votes, created = vote_submit_answers(
        annotator=annotator, assignment_id=assignment_id, submitted=submitted, answers=answers, seconds=seconds
    )
    return votes[0], created


def vote_submit_answers(
    *,
    annotator,
    assignment_id: int,
    submitted: str | None = None,
    answers: Mapping[str, str] | None = None,
    seconds: float | None = None,
) -> tuple[list[Vote], bool]:
    """Record the annotator's answers on their assignment; returns (one vote per question in order, created).

    ``submitted`` (left, right, tie, both_bad or skip) answers a one-question campaign; ``answers``
    (``criterion → left/right/tie/both_bad``) answers every question of the pair at once; ``submitted="skip"``
    skips the pair for every question. Each answer is stored as its own Vote row (its ``criterion``), all in one
    transaction. The same submission sent again returns the stored votes (created False); different answers on
    the same assignment are a :class:`Conflict`. Votes are stored against the images (``a``/``b``), not the
    sides. A submission counts once toward the pair's k (skips never count). A vote on a lease that expired is
    still taken while the pair needs votes; once others completed it, it is a Conflict, as is a vote on a pair
    withdrawn since it was leased (``feedback/safety.py``).
    """
    if submitted is not None and submitted not in SUBMITTED_CHOICES:
        raise ValidationError({"choice": [f"Choose one of {', '.join(SUBMITTED_CHOICES)}."]})
    try:
        with transaction.atomic():
            return _record_votes(annotator, assignment_id, submitted, answers, seconds)
    except IntegrityError as exc:  # pragma: no cover - guarded by the checks under the row locks
        raise Conflict("You already voted on this pair.") from exc


_VOTE_LOCK_SQL = f"""SELECT a.a_on_left, a.expires_at, p.id, p.valid_votes, p.is_gold, c.votes_per_pair, c.questions,
v.id, v.criterion, v.choice, v.submitted, v.seconds, v.created_at, p.withdrawn
FROM {Assignment._meta.db_table} a JOIN {Pair._meta.db_table} p ON p.id = a.pair_id
JOIN {Campaign._meta.db_table} c ON c.id = p.campaign_id LEFT JOIN {Vote._meta.db_table} v ON v.assignment_id = a.id
WHERE a.id = %s AND a.annotator_id = %s"""  # noqa: S608 - table names come from the models, values are parameters
_ASSIGNMENT_VOTED_SQL = f"UPDATE {Assignment._meta.db_table} SET status = %(voted)s WHERE id = %(assignment)s"  # noqa: S608
_PAIR_COUNT_VOTE_SQL = (
    f"UPDATE {Pair._meta.db_table} SET valid_votes = valid_votes + 1 WHERE id = %(pair)s AND %(counts)s"  # noqa: S608
)


@functools.cache
def _vote_insert_sql(answers: int) -> str:
    """One INSERT of ``answers`` vote rows (one per criterion), returning their ids and criteria."""
    rows = ", ".join(
        f"(%(assignment)s, %(pair)s, %(annotator)s, %(criterion_{i})s, %(choice_{i})s, %(submitted_{i})s, "
        "%(seconds)s, %(now)s)"
        for i in range(answers)
    )
    return f"""INSERT INTO {Vote._meta.db_table}
(assignment_id, pair_id, annotator_id, criterion, choice, submitted, seconds, created_at)
VALUES {rows} RETURNING id, criterion"""  # noqa: S608 - table names come from the models, values are parameters


@functools.cache
def _vote_write_sql(answers: int) -> str:
    """PostgreSQL does the three writes in one statement (writable CTEs); SQLite runs them one by one."""
    return f"""WITH vote AS ({_vote_insert_sql(answers)}), assignment AS ({_ASSIGNMENT_VOTED_SQL}),
pair AS ({_PAIR_COUNT_VOTE_SQL}) SELECT id, criterion FROM vote"""  # noqa: S608


def _write_votes(cursor, values: dict, choices: dict[str, tuple[str, str]]) -> dict[str, int]:
    """Insert one vote row per criterion, mark the assignment voted and count the submission once on the pair
    (unless a skip); returns each criterion's vote id. ``choices``: criterion → (choice, submitted)."""
    values = {**values, "voted": AssignmentStatus.VOTED.value}
    values["counts"] = any(choice != Choice.SKIP for choice, _ in choices.values())
    for i, (criterion, (choice, submitted)) in enumerate(choices.items()):
        values |= {f"criterion_{i}": criterion, f"choice_{i}": choice, f"submitted_{i}": submitted}
    if connection.vendor == "postgresql":
        cursor.execute(_vote_write_sql(len(choices)), values)
        return {criterion: vote_id for vote_id, criterion in cursor.fetchall()}
    cursor.execute(_vote_insert_sql(len(choices)), values)
    ids = {criterion: vote_id for vote_id, criterion in cursor.fetchall()}
    cursor.execute(_ASSIGNMENT_VOTED_SQL, values)
    cursor.execute(_PAIR_COUNT_VOTE_SQL, values)
    return ids


def _stored_vote(**fields) -> Vote:
    vote = Vote(**fields)
    vote._state.adding, vote._state.db = False, connection.alias
    return vote


def _criteria(questions) -> list[str]:
    """The criterion keys of a campaign's ``questions`` column as a raw cursor returns it (text or parsed)."""
    return criteria_of(json.loads(questions) if isinstance(questions, str | bytes) else questions)


def _record_votes(
    annotator, assignment_id: int, submitted: str | None, answers: Mapping[str, str] | None, seconds: float | None
) -> tuple[list[Vote], bool]:
    """The vote's transaction in hand-written SQL (the annotators' hot path; see ``feedback/handout.py``).

    The assignment and its pair are locked (not the campaign: that would serialise every vote of a campaign).
    """
    with hot_sql.cursor() as cursor:
        cursor.execute(for_update(_VOTE_LOCK_SQL, of="a, p"), [assignment_id, annotator.pk])
        rows = cursor.fetchall()
        if not rows:
            raise Assignment.DoesNotExist(f"No assignment {assignment_id} of yours.")
        a_on_left, expires_at, pair_id, valid_votes, is_gold, votes_per_pair, questions = rows[0][:7]
        criteria = _criteria(questions)
        try:
            pressed = answers_for(criteria, choice=submitted, answers=answers)
        except CriteriaError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        choices = {key: (_to_image_choice(value, bool(a_on_left)), value) for key, value in pressed.items()}
        identity = {"assignment_id": assignment_id, "pair_id": pair_id, "annotator": annotator}
        stored = {row[8]: row[7:13] for row in rows if row[7] is not None}
        if stored:
            if {key: row[2] for key, row in stored.items()} != {key: choice for key, (choice, _) in choices.items()}:
                said = ", ".join(f"{key}: {row[3]}" for key, row in stored.items())
                raise Conflict(f"You already voted ({said}) on this pair; a different vote is not accepted.")
            votes = [
                _stored_vote(
                    id=vote_id,
                    criterion=key,
                    choice=choice,
                    submitted=stored_submitted,
                    seconds=stored_seconds,
                    created_at=as_aware_datetime(created_at),
                    **identity,
                )
                for key in criteria
                for vote_id, _, choice, stored_submitted, stored_seconds, created_at in [stored[key]]
            ]
            return votes, False
        if rows[0][13]:
            raise Conflict("An image of this pair was reported and the pair withdrawn; fetch the next one.")
        now = timezone.now()
        if as_aware_datetime(expires_at) < now and valid_votes >= votes_per_pair and not is_gold:
            raise Conflict(
                "Your lease on this pair expired and the pair already has all its votes; fetch the next one."
            )
        values = {"assignment": assignment_id, "pair": pair_id, "annotator": annotator.pk}
        values |= {"seconds": seconds, "now": db_datetime(now)}
        ids = _write_votes(cursor, values, choices)
    votes = [
        _stored_vote(
            id=ids[key],
            criterion=key,
            choice=choice,
            submitted=pressed_value,
            seconds=seconds,
            created_at=now,
            **identity,
        )
        for key, (choice, pressed_value) in choices.items()
    ]
    return votes, True
