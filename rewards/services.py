"""Every write of the rewards app: preference datasets, reward models, image scores."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage

from core.uniqueness import create_named
from feedback.exports import pickapic_rows
from feedback.models import Campaign
from feedback.pickapic import PickapicRow, read_parquet, write_parquet
from rewards.datasets import dataset_stats
from rewards.models import DatasetSource, ImageScore, PreferenceDataset, RewardModel


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _store(*, name: str, path: Path, rows: Sequence[PickapicRow], **fields) -> PreferenceDataset:
    digest = _sha256(path)
    stored = f"datasets/{digest[:16]}.parquet"
    if not default_storage.exists(stored):
        with path.open("rb") as handle:
            stored = default_storage.save(stored, File(handle))

    def create() -> PreferenceDataset:
        campaigns = fields.pop("campaigns", ())
        dataset = PreferenceDataset.objects.create(
            name=name,
            file=stored,
            sha256=digest,
            size=path.stat().st_size,
            rows=len(rows),
            stats=dataset_stats(rows),
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
    created_by=None,
) -> PreferenceDataset:
    """Freeze the campaigns' current training votes into a dataset (skips, gold pairs, flagged annotators out)."""
    campaigns = list(campaigns)
    if not campaigns:
        raise ValidationError({"campaigns": ["Choose at least one campaign."]})
    if PreferenceDataset.objects.filter(name=name).exists():
        raise ValidationError({"name": [f"A dataset named {name!r} already exists."]})
    rows, excluded = pickapic_rows(
        campaigns, include_flagged=include_flagged, gold_threshold=gold_threshold, min_gold=min_gold
    )
    if not rows:
        raise ValidationError({"campaigns": ["These campaigns have no votes to train on yet (skips are not counted)."]})
    options = {
        "include_flagged": include_flagged,
        "gold_threshold": gold_threshold,
        "min_gold": min_gold,
        "excluded_annotators": {str(k): sorted(v) for k, v in excluded.items()},
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "snapshot.parquet"
        write_parquet(rows, path, check_images=False)
        return _store(
            name=name,
            path=path,
            rows=rows,
            source=DatasetSource.CAMPAIGNS,
            campaigns=campaigns,
            options=options,
            created_by=created_by,
        )


def dataset_import(*, name: str, path: str | os.PathLike[str], created_by=None) -> PreferenceDataset:
    """Import a Pick-a-Pic-schema Parquet file from disk (every row validated) as a dataset."""
    source = Path(path)
    if not source.is_file():
        raise ValidationError({"path": [f"No file at {str(source)!r}."]})
    if PreferenceDataset.objects.filter(name=name).exists():
        raise ValidationError({"name": [f"A dataset named {name!r} already exists."]})
    try:
        rows = read_parquet(source)
    except (ValueError, OSError) as exc:
        raise ValidationError({"path": [f"Not a readable Pick-a-Pic Parquet file: {exc}"]}) from exc
    if not rows:
        raise ValidationError({"path": ["The file holds no rows."]})
    return _store(
        name=name,
        path=source,
        rows=rows,
        source=DatasetSource.PARQUET,
        original_path=str(source.resolve()),
        created_by=created_by,
    )


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
