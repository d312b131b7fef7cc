"""Preference datasets: snapshots of campaigns' votes and imported Pick-a-Pic files, through REST and manage.py."""

from __future__ import annotations

import io
import json
import random
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from core.models import Run
from core.run_execution import run_execute
from feedback.pickapic import PickapicRow, read_parquet, write_parquet
from rewards.models import PreferenceDataset
from tests.rewards.conftest import png

pytestmark = pytest.mark.django_db


def test_snapshot_freezes_the_campaigns_training_votes(voted_campaign, client_for):
    engineer = client_for("engineer")

    response = engineer.post("/api/v1/datasets/", {"name": "snap", "campaigns": [voted_campaign.pk]}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["source"] == "campaigns" and body["campaigns"] == [voted_campaign.pk]
    assert body["rows"] == 5  # six votes, one skip
    assert body["stats"] | {"models": []} == {
        "rows": 5,
        "prompts": 3,
        "decisive": 4,
        "ties": 1,
        "both_bad": 0,
        "annotators": 2,
        "models": [],
        "criteria": {"overall": 5},
    }
    dataset = PreferenceDataset.objects.get(pk=body["id"])
    rows = read_parquet(dataset.file.path)
    from feedback.models import Vote

    assert sorted(r.ranking_id for r in rows) == sorted(
        Vote.objects.exclude(choice="skip").values_list("pk", flat=True)
    )
    # The detail view returns the recorded file hash.
    assert client_for("reviewer").get(f"/api/v1/datasets/{dataset.pk}/").json()["sha256"] == dataset.sha256


def test_snapshot_input_errors_are_400(voted_campaign, client_for):
    engineer = client_for("engineer")
    assert "campaigns" in engineer.post("/api/v1/datasets/", {"name": "x", "campaigns": []}, format="json").json()
    assert "campaigns" in engineer.post("/api/v1/datasets/", {"name": "x", "campaigns": [999]}, format="json").json()
    assert (
        "extra"
        in engineer.post(
            "/api/v1/datasets/", {"name": "x", "campaigns": [voted_campaign.pk], "extra": 1}, format="json"
        ).json()
    )
    engineer.post("/api/v1/datasets/", {"name": "x", "campaigns": [voted_campaign.pk]}, format="json")
    again = engineer.post("/api/v1/datasets/", {"name": "x", "campaigns": [voted_campaign.pk]}, format="json")
    assert again.status_code == 400 and "already exists" in again.json()["name"][0]
    assert client_for("reviewer").post("/api/v1/datasets/", {"name": "y"}, format="json").status_code == 403
    assert client_for("annotator").get("/api/v1/datasets/").status_code == 403


def _parquet(tmp_path, rows=None) -> str:
    rows = rows or [
        PickapicRow.from_choice("a", caption="a red fox", jpg_0=png(1), jpg_1=png(2), user_id=7, ranking_id=1),
        PickapicRow.from_choice("tie", caption="a red fox", jpg_0=png(3), jpg_1=png(4), user_id=8, ranking_id=2),
        PickapicRow.from_choice("b", caption="a blue cat", jpg_0=png(5), jpg_1=png(6), user_id=7, ranking_id=3),
    ]
    path = tmp_path / "pickapic.parquet"
    write_parquet(rows, path)
    return str(path)


def _upload(client, path, name="uploaded"):
    with open(path, "rb") as handle:
        return client.post("/api/v1/datasets/", {"name": name, "file": handle}, format="multipart")


def _start(client, kind: str, dataset_id: int):
    return client.post("/api/v1/runs/", {"kind": kind, "config": {"dataset": dataset_id}}, format="json")


def _server_paths(settings, tmp_path) -> list[str]:
    return [str(tmp_path), str(settings.MEDIA_ROOT), str(settings.FILE_UPLOAD_TEMP_DIR), str(settings.VAR_DIR)]


def test_import_command_and_upload_make_the_same_dataset(settings, tmp_path, client_for, users):
    settings.MEDIA_ROOT = tmp_path / "media"
    path = _parquet(tmp_path)
    out = io.StringIO()

    call_command("import_pickapic", path, "--name", "pickapic-small", stdout=out)

    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    assert summary["rows"] == 3 and summary["prompts"] == 2 and summary["ties"] == 1
    imported = PreferenceDataset.objects.get(name="pickapic-small")
    assert imported.state == "ready"

    upload = _upload(client_for("engineer"), path)

    # The request only stores the file and queues the import: 202, the dataset importing, its run queued.
    assert upload.status_code == 202, upload.json()
    body = upload.json()
    assert body["sha256"] == imported.sha256 and body["size"] == imported.size and body["source"] == "parquet"
    assert body["state"] == "importing" and body["rows"] == 0 and body["import_run"]
    run = Run.objects.get(pk=body["import_run"])
    assert (run.kind, run.queue, run.state, run.config) == (
        "dataset_import",
        "default",
        "queued",
        {"dataset": body["id"]},
    )
    assert run.created_by == users["engineer"]

    assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error

    dataset = client_for("reviewer").get(f"/api/v1/datasets/{body['id']}/").json()
    assert dataset["state"] == "ready" and dataset["error"] == ""
    assert dataset["rows"] == 3 and dataset["stats"] == imported.stats
    run.refresh_from_db()
    assert run.progress == 1.0 and run.progress_message == "validated 3 of 3 rows"
    page = Client()
    page.force_login(users["engineer"])
    assert "validated 3 of 3 rows" in page.get(f"/runs/{run.pk}/").content.decode()  # the run's page
    assert run.result["rows"] == 3 and run.result["dataset"] == body["id"]


def test_bad_parquet_is_a_clear_error(settings, tmp_path, client_for, users):
    settings.MEDIA_ROOT = tmp_path / "media"
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(CommandError, match="Not a readable Pick-a-Pic Parquet"):
        call_command("import_pickapic", str(bad), "--name", "bad")
    with pytest.raises(CommandError, match="No file"):
        call_command("import_pickapic", str(tmp_path / "missing.parquet"), "--name", "bad")

    response = _upload(client_for("engineer"), bad, name="b")

    assert response.status_code == 400 and "Not a Parquet file" in response.json()["file"][0]
    assert not any(path in response.content.decode() for path in _server_paths(settings, tmp_path))
    assert not PreferenceDataset.objects.exists() and not Run.objects.exists()
    assert not list(settings.FILE_UPLOAD_TEMP_DIR.iterdir())  # the streamed temporary file is gone


def test_a_bad_row_fails_the_import_run_with_an_error_that_names_no_server_path(settings, tmp_path, client_for, users):
    settings.MEDIA_ROOT = tmp_path / "media"
    good = PickapicRow.from_choice("a", caption="a red fox", jpg_0=png(1), jpg_1=png(2))
    path = _parquet(tmp_path, [good, good, PickapicRow.from_choice("b", caption="x", jpg_0=png(3), jpg_1=png(4))])
    # Break the third row's image after writing (write_parquet refuses bad rows).
    table = pq.read_table(path)
    images = table.column("jpg_1").to_pylist()
    images[2] = b"definitely not a png"
    pq.write_table(table.set_column(table.column_names.index("jpg_1"), "jpg_1", pa.array(images)), path)
    engineer = client_for("engineer")

    response = _upload(engineer, path)

    assert response.status_code == 202, response.json()
    run_id = response.json()["import_run"]
    assert run_execute(run_id=run_id, worker="inline") == "failed"
    dataset = engineer.get(f"/api/v1/datasets/{response.json()['id']}/")
    run = engineer.get(f"/api/v1/runs/{run_id}/")
    assert dataset.json()["state"] == "failed"
    assert dataset.json()["error"].startswith("Not a readable Pick-a-Pic Parquet file: the uploaded file: row 2: jpg_1")
    assert "row 2: jpg_1 does not decode" in run.json()["error"]
    for answer in (response, dataset, run):
        assert not any(p in answer.content.decode() for p in _server_paths(settings, tmp_path)), answer.content
    # A dataset that failed its import cannot be trained on.
    train = _start(engineer, "reward_train", dataset.json()["id"])
    assert train.status_code == 400 and "failed its import" in str(train.json()["config"]["dataset"])


def test_a_dataset_is_not_trained_on_until_its_import_succeeded(settings, tmp_path, client_for, users):
    settings.MEDIA_ROOT = tmp_path / "media"
    engineer = client_for("engineer")
    dataset = _upload(engineer, _parquet(tmp_path)).json()

    train = engineer.post(
        "/api/v1/runs/", {"kind": "reward_train", "config": {"dataset": dataset["id"]}}, format="json"
    )

    assert train.status_code == 400
    assert "still importing" in train.json()["config"]["dataset"][0]
    run_execute(run_id=dataset["import_run"], worker="inline")
    again = engineer.post(
        "/api/v1/runs/", {"kind": "reward_train", "config": {"dataset": dataset["id"]}}, format="json"
    )
    assert again.status_code == 201, again.json()
    # A ready dataset is not imported again.
    redo = engineer.post(
        "/api/v1/runs/", {"kind": "dataset_import", "config": {"dataset": dataset["id"]}}, format="json"
    )
    assert redo.status_code == 400 and "already imported" in redo.json()["config"]["dataset"][0]


def test_cancelling_the_import_before_it_starts_fails_the_dataset(
    settings, tmp_path, client_for, users, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path / "media"
    engineer = client_for("engineer")
    dataset = _upload(engineer, _parquet(tmp_path)).json()
    with django_capture_on_commit_callbacks(execute=True):  # run_finished is sent once the cancel commits
        cancel = engineer.post(f"/api/v1/runs/{dataset['import_run']}/cancel/")
    assert cancel.status_code == 202 and cancel.json()["state"] == "cancelled"
    answer = engineer.get(f"/api/v1/datasets/{dataset['id']}/").json()
    assert (answer["state"], answer["error"]) == ("failed", "The import was cancelled.")


@pytest.mark.parametrize("size", [20_000, 200_000])
def test_uploads_beyond_the_limit_are_refused_while_streaming(settings, tmp_path, client_for, users, size):
    """20 kB passes the Content-Length check (limit + multipart overhead) and is cut off while streaming;
    200 kB is refused from its Content-Length before the body is read."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.UPLOAD_MAX_BYTES = 10_000
    big = tmp_path / "big.parquet"
    big.write_bytes(b"PAR1" + b"x" * (size - 8) + b"PAR1")

    response = _upload(client_for("engineer"), big)

    assert response.status_code == 413
    assert "larger than the limit of 9.77 KiB (UPLOAD_MAX_BYTES)" in response.json()["file"][0]
    assert not PreferenceDataset.objects.exists()
    assert not list(settings.FILE_UPLOAD_TEMP_DIR.iterdir())
    assert not (tmp_path / "media").exists()


@pytest.mark.parametrize("body", ["null", "true", "5", "[]", '"x"'])
def test_a_json_body_that_is_not_an_object_is_a_400(client_for, users, body):
    response = client_for("engineer").post("/api/v1/datasets/", body, content_type="application/json")

    assert response.status_code == 400
    assert "Send a JSON object with name and campaigns" in response.json()["non_field_errors"][0]


def test_upload_fields_are_checked(settings, tmp_path, client_for, users):
    settings.MEDIA_ROOT = tmp_path / "media"
    engineer = client_for("engineer")
    assert "file" in engineer.post("/api/v1/datasets/", {"name": "x"}, format="multipart").json()
    with open(_parquet(tmp_path), "rb") as handle:
        missing_name = engineer.post("/api/v1/datasets/", {"file": handle}, format="multipart")
    assert missing_name.status_code == 400 and "name" in missing_name.json()
    assert _upload(engineer, _parquet(tmp_path), name="same").status_code == 202
    taken = _upload(engineer, _parquet(tmp_path), name="same")
    assert taken.status_code == 400 and "already exists" in taken.json()["name"][0]
    with open(_parquet(tmp_path), "rb") as handle:
        reviewer = client_for("reviewer").post("/api/v1/datasets/", {"name": "r", "file": handle}, format="multipart")
    assert reviewer.status_code == 403


def _noise_png(rng: random.Random, side: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3)).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def test_a_50_mib_upload_does_not_enter_the_web_process_memory(settings, tmp_path, users):
    """Python allocations while the view handles a 50 MiB upload stay far below the file's size."""
    from rest_framework.test import APIRequestFactory, force_authenticate

    from rewards.api import DatasetListView

    settings.MEDIA_ROOT = tmp_path / "media"
    rng = random.Random(0)
    rows = [
        PickapicRow.from_choice("a", caption=f"p{i}", jpg_0=_noise_png(rng, 256), jpg_1=_noise_png(rng, 256))
        for i in range(128)
    ]
    path = tmp_path / "big.parquet"
    write_parquet(rows, path)
    del rows
    size = path.stat().st_size
    assert size > 48 * 1024**2
    with path.open("rb") as handle:
        request = APIRequestFactory().post("/api/v1/datasets/", {"name": "big", "file": handle}, format="multipart")
    force_authenticate(request, users["engineer"])

    tracemalloc.start()
    try:
        response = DatasetListView.as_view()(request)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        request.close()  # what the request handler does at the end of a request: the temporary file goes

    assert response.status_code == 202, response.data
    assert response.data["size"] == size
    assert peak < 8 * 1024**2, (
        f"peak {peak / 1024**2:.1f} MiB of Python allocations for a {size / 1024**2:.0f} MiB upload"
    )
