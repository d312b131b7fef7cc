"""A preference dataset per criterion: snapshots and imports select one question's votes, training on a dataset
that mixes questions is refused, and a reward model per criterion trains with the usual ``reward_train`` run."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from core.models import Run
from core.run_execution import run_execute
from feedback import handout
from feedback import services as feedback_services
from feedback.pickapic import PickapicRow, read_parquet, write_parquet
from generators import services as generator_services
from generators.models import ModelVersion
from rewards import services
from rewards.models import PreferenceDataset, RewardModel
from tests.conftest import make_user
from tests.rewards.conftest import png
from tests.support.images import store_images

pytestmark = pytest.mark.django_db

QUESTIONS = [{"key": "prompt", "text": "Matches the prompt?"}, {"key": "looks", "text": "Looks better?"}]


@pytest.fixture
def two_question_campaign(users, settings, tmp_path, django_user_model):
    """3 pairs, k=2, two questions; two annotators answer every pair (one skips one pair)."""
    settings.MEDIA_ROOT = tmp_path
    base = generator_services.base_model_register(name="tiny", source="org/tiny")
    version = ModelVersion.objects.get(base_model=base)
    prompt_set = generator_services.prompt_set_create(name="p", split="train", prompts=[f"q {i}" for i in range(3)])
    for prompt in prompt_set.prompts.all():
        store_images(version, [(prompt, seed, png(prompt.pk * 10 + seed)) for seed in (0, 1)])
    second = make_user(django_user_model, "annotator", "second")
    campaign = feedback_services.campaign_create(
        name="two",
        purpose="collect",
        prompt_set=prompt_set,
        model_versions=[version],
        annotators=[users["annotator"], second],
        votes_per_pair=2,
        questions=QUESTIONS,
    )
    for annotator, skip in ((users["annotator"], False), (second, True)):
        for i in range(3):
            lease = handout.next_assignment(annotator=annotator, campaign=campaign)
            if skip and i == 2:
                feedback_services.vote_submit(annotator=annotator, assignment_id=lease.assignment, submitted="skip")
            else:
                answers = {"prompt": "left", "looks": "tie" if i == 0 else "right"}
                feedback_services.vote_submit(annotator=annotator, assignment_id=lease.assignment, answers=answers)
    return campaign


def test_a_snapshot_selects_one_criterion(two_question_campaign, client_for, settings):
    engineer = client_for("engineer")

    looks = engineer.post(
        "/api/v1/datasets/",
        {"name": "looks", "campaigns": [two_question_campaign.pk], "criterion": "looks"},
        format="json",
    )
    every = engineer.post("/api/v1/datasets/", {"name": "all", "campaigns": [two_question_campaign.pk]}, format="json")
    unknown = engineer.post(
        "/api/v1/datasets/",
        {"name": "x", "campaigns": [two_question_campaign.pk], "criterion": "colour"},
        format="json",
    )
    bad = engineer.post(
        "/api/v1/datasets/", {"name": "y", "campaigns": [two_question_campaign.pk], "criterion": "No!"}, format="json"
    )

    assert looks.status_code == 201, looks.json()
    body = looks.json()
    assert body["criterion"] == "looks" and body["rows"] == 5  # 6 submissions, one skip
    assert body["stats"]["criteria"] == {"looks": 5} and body["stats"]["ties"] == 2
    stored = PreferenceDataset.objects.get(pk=body["id"])
    assert {row.criterion for row in read_parquet(stored.file.path)} == {"looks"}
    assert every.status_code == 201 and every.json()["stats"]["criteria"] == {"looks": 5, "prompt": 5}
    assert every.json()["criterion"] == ""
    assert unknown.status_code == 400 and "criterion" in unknown.json()
    assert bad.status_code == 400 and "criterion" in bad.json()


def test_training_asks_for_one_criterion(two_question_campaign, client_for, settings):
    engineer = client_for("engineer")
    mixed = services.dataset_snapshot(name="mixed", campaigns=[two_question_campaign])
    one = services.dataset_snapshot(name="one", campaigns=[two_question_campaign], criterion="prompt")

    def start(config: dict):
        return engineer.post("/api/v1/runs/", {"kind": "reward_train", "config": config}, format="json")

    on_mixed = start({"dataset": mixed.pk})
    on_one = start({"dataset": one.pk, "max_steps": 1})
    campaigns_no_criterion = start({"campaigns": [two_question_campaign.pk]})
    campaigns_unknown = start({"campaigns": [two_question_campaign.pk], "criterion": "colour"})
    campaigns_looks = start({"campaigns": [two_question_campaign.pk], "criterion": "looks", "max_steps": 1})
    dataset_and_criterion = start({"dataset": one.pk, "criterion": "looks"})

    assert on_mixed.status_code == 400 and "several questions" in on_mixed.json()["config"]["dataset"][0]
    assert on_one.status_code == 201, on_one.json()
    assert campaigns_no_criterion.status_code == 400 and "criterion" in campaigns_no_criterion.json()["config"]
    assert campaigns_unknown.status_code == 400 and "criterion" in campaigns_unknown.json()["config"]
    assert campaigns_looks.status_code == 201 and campaigns_looks.json()["config"]["criterion"] == "looks"
    assert dataset_and_criterion.status_code == 400 and "criterion" in dataset_and_criterion.json()["config"]


def _bright(level: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (level, level, level)).save(buffer, format="PNG")
    return buffer.getvalue()


def _two_criteria_file(tmp_path) -> str:
    """12 prompts × 4 pairs answered on two criteria with opposite preferences: ``bright`` prefers the brighter
    image, ``dark`` the darker one (and a few rows of a file without criteria: ``overall``)."""
    rows = []
    for p in range(12):
        for k in range(4):
            low, high = _bright(20 + 10 * k + p), _bright(200 - 5 * k - p)
            first, second = (high, low) if k % 2 else (low, high)
            bright = "a" if first == high else "b"
            dark = "b" if bright == "a" else "a"
            common = {"caption": f"prompt {p}", "jpg_0": first, "jpg_1": second, "user_id": k}
            rows.append(PickapicRow.from_choice(bright, criterion="bright", **common))
            rows.append(PickapicRow.from_choice(dark, criterion="dark", **common))
    rows.append(PickapicRow.from_choice("tie", caption="extra", jpg_0=_bright(1), jpg_1=_bright(2)))
    path = tmp_path / "two.parquet"
    write_parquet(rows, path)
    return str(path)


def test_import_selects_one_criterion_and_names_a_missing_one(settings, tmp_path, client_for, users):
    settings.MEDIA_ROOT = tmp_path / "media"
    path = _two_criteria_file(tmp_path)
    out = io.StringIO()

    call_command("import_pickapic", path, "--name", "dark", "--criterion", "dark", stdout=out)
    with pytest.raises(CommandError, match="no votes on the criterion 'colour'.*bright, dark, overall"):
        call_command("import_pickapic", path, "--name", "colour", "--criterion", "colour", stdout=io.StringIO())
    with pytest.raises(CommandError, match="criterion: 'Dark' is not a slug"):
        call_command("import_pickapic", path, "--name", "bad", "--criterion", "Dark", stdout=io.StringIO())

    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    assert summary["rows"] == 48 and summary["criteria"] == {"bright": 48, "dark": 48, "overall": 1}
    assert PreferenceDataset.objects.get(name="dark").criterion == "dark"

    engineer = client_for("engineer")
    with open(path, "rb") as handle:
        upload = engineer.post(
            "/api/v1/datasets/", {"name": "up", "file": handle, "criterion": "bright"}, format="multipart"
        )
    with open(path, "rb") as handle:
        missing = engineer.post(
            "/api/v1/datasets/", {"name": "up2", "file": handle, "criterion": "colour"}, format="multipart"
        )
    assert upload.status_code == 202 and upload.json()["criterion"] == "bright"
    assert run_execute(run_id=upload.json()["import_run"], worker="inline") == "succeeded"
    dataset = PreferenceDataset.objects.get(name="up")
    assert dataset.state == "ready" and dataset.rows == 48 and dataset.stats["criteria"]["overall"] == 1
    assert run_execute(run_id=missing.json()["import_run"], worker="inline") == "failed"
    failed = PreferenceDataset.objects.get(name="up2")
    assert failed.state == "failed" and "no votes on the criterion 'colour'" in failed.error

    everything = services.dataset_import(name="everything", path=path)
    assert everything.rows == 97 and everything.criterion == ""


@pytest.mark.slow
def test_a_reward_model_per_criterion_trains_on_that_criterions_rows(settings, tmp_path, client_for, users):
    settings.MEDIA_ROOT = tmp_path / "media"
    # Inline in a test transaction the run's heartbeat thread cannot see or write the run (its own connection: the
    # row is uncommitted on PostgreSQL, locked by the test on SQLite), so a beat would read as a lost lease: on a
    # busy machine training outlasts the 10 s interval. No beat and no staleness within the test.
    settings.RUN_HEARTBEAT_SECONDS = 3600
    settings.RUN_STALE_AFTER_SECONDS = 3600
    path = _two_criteria_file(tmp_path)
    dark = services.dataset_import(name="dark", path=path, criterion="dark")
    config = {"dataset": dark.pk, "max_steps": 2, "eval_every": 2, "batch_size": 8, "warmup_steps": 1, "name": "rm"}
    response = client_for("engineer").post("/api/v1/runs/", {"kind": "reward_train", "config": config}, format="json")
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]

    assert run_execute(run_id=run_id, worker="inline") == "succeeded", Run.objects.get(pk=run_id).error

    model = RewardModel.objects.get(name="rm")
    assert model.dataset == dark
    pairs = sum(model.metrics[f"{split}_pairs"] for split in ("train", "val", "test"))
    assert pairs == 48  # the dark rows only, not the bright ones or the extra overall one
