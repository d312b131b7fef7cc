"""Preference datasets: snapshots of campaigns' votes and imported Pick-a-Pic files, through REST and manage.py."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

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


def test_import_command_and_upload_make_the_same_dataset(settings, tmp_path, client_for, users):
    settings.MEDIA_ROOT = tmp_path / "media"
    path = _parquet(tmp_path)
    out = io.StringIO()

    call_command("import_pickapic", path, "--name", "pickapic-small", stdout=out)

    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    assert summary["rows"] == 3 and summary["prompts"] == 2 and summary["ties"] == 1
    with open(path, "rb") as handle:
        upload = client_for("engineer").post(
            "/api/v1/datasets/", {"name": "uploaded", "file": handle}, format="multipart"
        )
    assert upload.status_code == 201, upload.json()
    assert upload.json()["sha256"] == PreferenceDataset.objects.get(name="pickapic-small").sha256
    assert upload.json()["source"] == "parquet"


def test_bad_parquet_is_a_clear_error(settings, tmp_path, client_for, users):
    settings.MEDIA_ROOT = tmp_path / "media"
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(CommandError, match="Not a readable Pick-a-Pic Parquet"):
        call_command("import_pickapic", str(bad), "--name", "bad")
    with pytest.raises(CommandError, match="No file"):
        call_command("import_pickapic", str(tmp_path / "missing.parquet"), "--name", "bad")
    with bad.open("rb") as handle:
        response = client_for("engineer").post("/api/v1/datasets/", {"name": "b", "file": handle}, format="multipart")
    assert response.status_code == 400 and "Not a readable" in response.json()["file"][0]
    assert not PreferenceDataset.objects.exists()
