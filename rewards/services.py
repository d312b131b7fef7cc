"""Every write of the rewards app: preference datasets, reward models, image scores."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Max

from core import selectors as core_selectors
from core import services as core_services
from core.run_states import TERMINAL_STATES
from core.uniqueness import create_named
from feedback import refit_selectors
from feedback import selectors as feedback_selectors
from feedback.exports import pickapic_rows
from feedback.models import Campaign, Selection
from feedback.pickapic import write_parquet
from rewards.datasets import DatasetFileError, check_dataset_criterion, dataset_stats, scan_pickapic
from rewards.models import (
    CampaignCurvePoint,
    CampaignRefit,
    DatasetSource,
    DatasetState,
    ImageScore,
    PreferenceDataset,
    ReferenceImage,
    ReferenceSet,
    RewardModel,
    VersionMetric,
)

PARQUET_MAGIC = b"PAR1"


def _sha256(handle) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
    handle.seek(0)
    return digest.hexdigest()


def _store_file(content: File, digest: str) -> str:
    """Save ``content`` under a content-addressed name (once per content); returns the stored name.

    A temporary upload on a filesystem storage is moved into place, not copied; other files are streamed.
    """
    stored = f"datasets/{digest[:16]}.parquet"
    if not default_storage.exists(stored):
        stored = default_storage.save(stored, content)
    return stored


def _check_name_free(name: str) -> None:
    if PreferenceDataset.objects.filter(name=name).exists():
        raise ValidationError({"name": [f"A dataset named {name!r} already exists."]})


def _checked_criterion(criterion: str) -> str:
    try:
        return check_dataset_criterion(criterion)
    except DatasetFileError as exc:
        raise ValidationError({"criterion": [str(exc)]}) from None


def _store(*, name: str, path: Path, stats: dict, **fields) -> PreferenceDataset:
    with path.open("rb") as handle:
        digest = _sha256(handle)
        stored = _store_file(File(handle), digest)

    def create() -> PreferenceDataset:
        campaigns = fields.pop("campaigns", ())
        dataset = PreferenceDataset.objects.create(
            name=name,
            file=stored,
            sha256=digest,
            size=path.stat().st_size,
            rows=stats["rows"],
            stats=stats,
            state=DatasetState.READY,
            **fields,
        )
        dataset.campaigns.set(campaigns)
        return dataset

    return create_named(PreferenceDataset, name, "dataset", create)


def dataset_snapshot(
    *,
    name: str,
    campaigns: Iterable[Campaign],
    include_flagged: bool = False,
    gold_threshold: float = 0.7,
    min_gold: int = 5,
    criterion: str = "",
    exclude_annotators: Iterable[int] = (),
    created_by=None,
) -> PreferenceDataset:
    """Freeze the campaigns' current training votes into a dataset (skips, gold pairs, flagged annotators out).

    ``criterion``: only the votes on that question (every campaign must ask it); empty: every question's votes.
    ``exclude_annotators``: ids of users whose votes are left out (recorded in ``options``; unknown ids: 400).
    """
    campaigns = list(campaigns)
    if not campaigns:
        raise ValidationError({"campaigns": ["Choose at least one campaign."]})
    _check_name_free(name)
    if _checked_criterion(criterion):
        for campaign in campaigns:
            feedback_selectors.criterion_of(campaign, criterion)
    exclude_ids = sorted(set(exclude_annotators))
    usernames = core_selectors.usernames_by_id(exclude_ids)
    unknown = sorted(set(exclude_ids) - set(usernames))
    if unknown:
        raise ValidationError({"exclude_annotators": [f"Unknown user id(s): {unknown}."]})
    rows, excluded = pickapic_rows(
        campaigns,
        include_flagged=include_flagged,
        gold_threshold=gold_threshold,
        min_gold=min_gold,
        criterion=criterion or None,
        exclude_users=usernames.values(),
    )
    if not rows:
        raise ValidationError({"campaigns": ["These campaigns have no votes to train on yet (skips are not counted)."]})
    options = {
        "include_flagged": include_flagged,
        "gold_threshold": gold_threshold,
        "min_gold": min_gold,
        "exclude_annotators": [{"id": pk, "username": usernames[pk]} for pk in exclude_ids],
        "excluded_annotators": {str(k): sorted(v) for k, v in excluded.items()},
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "snapshot.parquet"
        write_parquet(rows, path, check_images=False)
        return _store(
            name=name,
            path=path,
            stats=dataset_stats(rows),
            source=DatasetSource.CAMPAIGNS,
            campaigns=campaigns,
            options=options,
            criterion=criterion,
            created_by=created_by,
        )


def dataset_import(
    *, name: str, path: str | os.PathLike[str], criterion: str = "", created_by=None
) -> PreferenceDataset:
    """Import a Pick-a-Pic-schema Parquet file from the server's disk, synchronously (``manage.py
    import_pickapic``): every row is validated, a batch at a time, before the file is stored as a ready dataset.
    ``criterion``: the dataset is the file's rows on that question (rows without one answer ``overall``).
    Problems raise ``ValidationError`` on ``path`` (the caller's own path is named: it is their file)."""
    source = Path(path)
    if not source.is_file():
        raise ValidationError({"path": [f"No file at {str(source)!r}."]})
    _check_name_free(name)
    criterion = _checked_criterion(criterion)
    try:
        stats = scan_pickapic(source, label=str(source), criterion=criterion)
    except DatasetFileError as exc:
        raise ValidationError({"path": [str(exc)]}) from exc
    return _store(
        name=name,
        path=source,
        stats=stats,
        source=DatasetSource.PARQUET,
        original_path=str(source.resolve()),
        criterion=criterion,
        created_by=created_by,
    )


def _looks_like_parquet(upload: UploadedFile) -> bool:
    """Parquet files start and end with ``PAR1`` (a cheap check; the import run reads the rest)."""
    if upload.size < 2 * len(PARQUET_MAGIC) + 4:
        return False
    upload.seek(0)
    head = upload.read(len(PARQUET_MAGIC))
    upload.seek(upload.size - len(PARQUET_MAGIC))
    tail = upload.read(len(PARQUET_MAGIC))
    upload.seek(0)
    return head == PARQUET_MAGIC and tail == PARQUET_MAGIC


def dataset_upload_accept(
    *, name: str, upload: UploadedFile, criterion: str = "", created_by=None
) -> PreferenceDataset:
    """Store an uploaded Parquet file as an ``importing`` dataset and queue its ``dataset_import`` run.

    The web request only moves the streamed temporary file into storage (its SHA-256 was computed while it
    arrived, see ``core.uploads``); reading and validating the rows is the run's job. Problems raise
    ``ValidationError`` on ``name``, ``file`` or ``criterion`` with messages that never name a server path.
    ``criterion``: the dataset is the file's rows on that question (its import run checks the file has some).
    """
    _check_name_free(name)
    criterion = _checked_criterion(criterion)
    if not _looks_like_parquet(upload):
        raise ValidationError({"file": ["Not a Parquet file: it must start and end with the bytes PAR1."]})
    digest = getattr(upload, "sha256", None) or _sha256(upload)
    stored = _store_file(upload, digest)

    def create() -> PreferenceDataset:  # one transaction (create_named): the run is dispatched on commit
        dataset = PreferenceDataset.objects.create(
            name=name,
            source=DatasetSource.PARQUET,
            file=stored,
            sha256=digest,
            size=upload.size,
            rows=0,
            state=DatasetState.IMPORTING,
            options={"uploaded_as": Path(upload.name or "").name[:200]},
            criterion=criterion,
            created_by=created_by,
        )
        run = core_services.run_create(kind="dataset_import", config={"dataset": dataset.pk}, created_by=created_by)
        dataset.import_run = run
        dataset.save(update_fields=["import_run"])
        return dataset

    return create_named(PreferenceDataset, name, "dataset", create)


def dataset_import_complete(*, dataset: PreferenceDataset, stats: dict) -> PreferenceDataset:
    """The import run validated every row: the dataset is ready for training."""
    dataset.rows, dataset.stats, dataset.state, dataset.error = stats["rows"], stats, DatasetState.READY, ""
    dataset.save(update_fields=["rows", "stats", "state", "error"])
    return dataset


def dataset_import_fail(*, dataset_id: int, error: str) -> None:
    """Mark a dataset that is still importing as failed, with a readable reason (no server paths)."""
    PreferenceDataset.objects.filter(pk=dataset_id, state=DatasetState.IMPORTING).update(
        state=DatasetState.FAILED, error=error[:2000]
    )


def dataset_import_run_finished(*, run) -> None:
    """A ``dataset_import`` run ended: a dataset it left importing (cancelled, crashed) is marked failed."""
    if run.state == "succeeded" or "dataset" not in run.config:
        return
    reason = "The import was cancelled." if run.state == "cancelled" else f"The import run {run.pk} failed."
    dataset_import_fail(dataset_id=run.config["dataset"], error=reason)


def reward_model_register(
    *, name: str, backbone: str, dataset=None, training_run=None, artifact=None, metrics=None, created_by=None
) -> RewardModel:
    """Record a reward model (trained: with its run, dataset and zipped folder; zero-shot: the backbone)."""
    return create_named(
        RewardModel,
        name,
        "reward model",
        lambda: RewardModel.objects.create(
            name=name,
            backbone=backbone,
            dataset=dataset,
            training_run=training_run,
            artifact=artifact,
            metrics=dict(metrics or {}),
            created_by=created_by,
        ),
    )


def image_scores_store(*, reward_model: RewardModel, scores: dict[int, float], run=None) -> int:
    """Store scores by image id (scoring the same image again keeps the first score); returns new rows."""
    before = ImageScore.objects.filter(reward_model=reward_model).count()
    ImageScore.objects.bulk_create(
        [ImageScore(reward_model=reward_model, image_id=i, score=s, run=run) for i, s in scores.items()],
        ignore_conflicts=True,
    )
    return ImageScore.objects.filter(reward_model=reward_model).count() - before


def campaign_refits_start_due(*, started_by=None) -> list[CampaignRefit]:
    """Start a ``selection_refit`` run for every open ``collect`` campaign that is due: ``refit_every`` valid votes
    since its last refit, or (``uncertainty`` campaigns) none yet, for the first priorities from zero-shot. At most
    one refit per campaign is queued or running: the database refuses a second (``campaign_refit_one_active``).
    Called by ``core.events.periodic_check`` (never on the vote's path)."""
    due = refit_selectors.open_collect_campaigns()
    last = dict(
        CampaignRefit.objects.filter(campaign_id__in=[d.campaign for d in due])
        .values_list("campaign_id")
        .annotate(votes=Max("votes"))
    )
    active = set(CampaignRefit.objects.filter(active=True).values_list("campaign_id", flat=True))
    started = []
    for campaign in due:
        if campaign.campaign in active:
            continue
        if campaign.campaign in last:
            if campaign.valid_votes - last[campaign.campaign] < campaign.refit_every:
                continue
        elif campaign.selection != Selection.UNCERTAINTY and campaign.valid_votes < campaign.refit_every:
            continue
        refit = _campaign_refit_start(campaign.campaign, campaign.valid_votes, started_by)
        if refit is not None:
            started.append(refit)
    return started


def _campaign_refit_start(campaign_id: int, votes: int, started_by) -> CampaignRefit | None:
    """The run and its CampaignRefit row in one transaction (dispatched on commit), or None when another process
    started one meanwhile."""
    try:
        with transaction.atomic():
            run = core_services.run_create(
                kind="selection_refit", config={"campaign": campaign_id}, created_by=started_by
            )
            return CampaignRefit.objects.create(campaign_id=campaign_id, run=run, votes=votes)
    except IntegrityError:
        return None


def campaign_refit_record(*, run, outcome, priorities: int) -> CampaignRefit:
    """Store what a refit measured (a ``rewards.learning_curve.RefitOutcome``): its curve points and figures."""
    refit, _ = CampaignRefit.objects.get_or_create(  # a run started by hand has no row yet
        run=run, defaults={"campaign_id": run.config["campaign"], "votes": outcome.used_votes, "active": False}
    )
    refit.used_votes, refit.test_votes = outcome.used_votes, outcome.test_votes
    refit.zero_shot_accuracy, refit.human_ceiling = outcome.zero_shot_accuracy, outcome.human_ceiling
    refit.ceiling_pairs, refit.priorities, refit.priority_source = (
        outcome.ceiling_pairs,
        priorities,
        outcome.priority_source,
    )
    refit.save()
    refit.points.all().delete()  # a retried attempt replaces the points of the one it took over from
    CampaignCurvePoint.objects.bulk_create(
        CampaignCurvePoint(refit=refit, votes=p.votes, train_votes=p.train_votes, accuracy=p.accuracy)
        for p in outcome.points
    )
    return refit


def campaign_refit_finished(*, run) -> None:
    """A ``selection_refit`` run ended (any way): its campaign may be refitted again."""
    CampaignRefit.objects.filter(run=run, active=True).update(active=False)


def campaign_refits_reconcile() -> int:
    """Release refits whose run ended without the ``run_finished`` receiver taking effect (or whose run is gone);
    returns how many. Called by ``core.events.periodic_check``."""
    return CampaignRefit.objects.filter(active=True, run__state__in=TERMINAL_STATES).update(active=False)


def reference_set_create(
    *, name: str, prompt_set, images: Iterable[tuple[object, bytes]], description: str = "", created_by=None
) -> ReferenceSet:
    """Register reference images of ``prompt_set``: ``images`` holds (prompt or None, PNG/JPEG bytes); files are
    content-addressed. At least two images (a covariance needs them); prompts must belong to the set."""
    from django.core.files.base import ContentFile

    images = list(images)
    if len(images) < 2:
        raise ValidationError({"images": ["A reference set needs at least two images."]})
    allowed = set(prompt_set.items.values_list("prompt_id", flat=True))
    strangers = sorted({p.pk for p, _ in images if p is not None and p.pk not in allowed})
    if strangers:
        raise ValidationError({"images": [f"Prompt(s) {strangers} are not in prompt set {prompt_set.name!r}."]})

    def create() -> ReferenceSet:
        reference_set = ReferenceSet.objects.create(
            name=name, prompt_set=prompt_set, description=description, created_by=created_by
        )
        rows = []
        for prompt, content in images:
            digest = hashlib.sha256(content).hexdigest()
            stored = f"references/{digest[:2]}/{digest}"
            if not default_storage.exists(stored):
                stored = default_storage.save(stored, ContentFile(content))
            rows.append(ReferenceImage(reference_set=reference_set, prompt=prompt, file=stored, sha256=digest))
        ReferenceImage.objects.bulk_create(rows)
        return reference_set

    return create_named(ReferenceSet, name, "reference set", create)


def version_metrics_store(*, run, rows: Iterable[dict]) -> int:
    """Replace the metric rows of ``run`` (a retried attempt rewrites them) with ``rows`` (VersionMetric fields);
    call inside the run's fence."""
    with transaction.atomic():
        VersionMetric.objects.filter(run=run).delete()
        created = VersionMetric.objects.bulk_create([VersionMetric(run=run, **row) for row in rows])
    return len(created)
