"""The ``dataset_import`` run (queue ``default``): validate an uploaded Pick-a-Pic Parquet file row by row and
make its dataset ready, with progress on the run's page. No torch: the web process validates its config."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from core import services as run_services
from core.ids import IdField
from core.jobs import JobCancelled, JobContext, JobFailed
from core.models import Run
from core.storage import stored_file_local_path
from core.validation import StrictSerializer
from rewards import services
from rewards.datasets import DatasetFileError, scan_pickapic, without_paths
from rewards.models import DatasetState, PreferenceDataset

UPLOAD_LABEL = "the uploaded file"


class DatasetImportConfigSerializer(StrictSerializer):
    """The dataset to import: one uploaded through ``POST /api/v1/datasets/`` that is not ready yet."""

    dataset = IdField()

    def validate_dataset(self, pk: int) -> int:
        dataset = PreferenceDataset.objects.filter(pk=pk).only("state").first()
        if dataset is None:
            raise serializers.ValidationError(f"Unknown dataset {pk}.")
        if dataset.state == DatasetState.READY:
            raise serializers.ValidationError(f"Dataset {pk} is already imported.")
        return pk


def ready_dataset_id(pk: int) -> int:
    """``pk`` if that dataset is ready for training; otherwise a ValidationError saying what it is waiting for."""
    dataset = PreferenceDataset.objects.filter(pk=pk).only("state", "import_run_id").first()
    if dataset is not None and dataset.state == DatasetState.IMPORTING:
        raise serializers.ValidationError(
            f"Dataset {pk} is still importing: wait until its import run {dataset.import_run_id} has finished."
        )
    if dataset is not None and dataset.state == DatasetState.FAILED:
        raise serializers.ValidationError(f"Dataset {pk} failed its import and cannot be trained on; upload it again.")
    return pk


def dataset_import(run: Run, ctx: JobContext) -> dict:
    """Scan the stored file (every row validated, a batch at a time), then mark the dataset ready or failed."""
    dataset = PreferenceDataset.objects.get(pk=run.config["dataset"])
    if dataset.state == DatasetState.READY:  # a retried run whose first attempt finished the import
        return {"dataset": dataset.pk, "rows": dataset.rows}
    path = stored_file_local_path(dataset.file, dataset.sha256)

    def on_progress(done: int, total: int) -> None:
        ctx.report_progress(done / max(total, 1), f"validated {done} of {total} rows")
        if ctx.should_stop():
            raise JobCancelled(f"stopped after validating {done} of {total} rows")

    ctx.report_progress(0.0, "reading the file")
    try:
        stats = scan_pickapic(path, label=UPLOAD_LABEL, on_progress=on_progress, criterion=dataset.criterion)
    except DatasetFileError as exc:
        error = without_paths(str(exc), path, settings.MEDIA_ROOT, label=UPLOAD_LABEL)
        with run_services.run_fenced(run_id=ctx.run_id, attempt=ctx.attempt):
            services.dataset_import_fail(dataset_id=dataset.pk, error=error)
        raise JobFailed(f"Dataset {dataset.name!r}: {error}") from None
    with run_services.run_fenced(run_id=ctx.run_id, attempt=ctx.attempt):
        services.dataset_import_complete(dataset=dataset, stats=stats)
    return {"dataset": dataset.pk, "rows": stats["rows"], "prompts": stats["prompts"], "ties": stats["ties"]}
