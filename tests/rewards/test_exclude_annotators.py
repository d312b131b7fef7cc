"""Leaving named annotators' votes out of training (``exclude_annotators``): the dataset snapshot, the
``reward_train`` and ``preference_tune`` run configs (unknown ids: 400), the rows the trainers build their pairs
from, and what the run and the dataset record."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from core import services as core_services
from core.models import Run
from core.run_execution import run_execute
from feedback.models import Vote
from rewards.data import pairs_from_pickapic
from rewards.executors import excluded_annotators_of, training_rows
from rewards.models import PreferenceDataset
from tests.rewards.test_reward_runs import _dataset

pytestmark = pytest.mark.django_db

UNKNOWN = 987_654


def _second():
    return get_user_model().objects.get(username="second")


def _reward_run(campaign, **config) -> Run:
    return core_services.run_create(kind="reward_train", config={"campaigns": [campaign.pk], **config})


def test_excluded_votes_never_reach_the_training_pairs(voted_campaign, users):
    second = _second()
    core_services.user_set_active(user=second, active=False)  # deactivated: the votes stay stored
    assert Vote.objects.filter(annotator=second).count() == 3

    kept_run = _reward_run(voted_campaign)
    _, all_rows = training_rows(kept_run)
    assert {row.user_id for row in all_rows} == {users["annotator"].pk, second.pk}  # without the option: both

    run = _reward_run(voted_campaign, exclude_annotators=[second.pk])
    dataset, rows = training_rows(run)
    pairs = pairs_from_pickapic(rows)
    assert len(rows) == 2 and {row.user_id for row in rows} == {users["annotator"].pk}
    assert {pair.annotator for pair in pairs} == {str(users["annotator"].pk)}
    # The run's snapshot says whom it left out, by id and name, beside the gold-flagged ones.
    assert dataset.options["exclude_annotators"] == [{"id": second.pk, "username": "second"}]
    assert dataset.options["excluded_annotators"] == {str(voted_campaign.pk): ["second"]}
    assert excluded_annotators_of(run) == [{"id": second.pk, "username": "second"}]
    assert Vote.objects.filter(annotator=second).count() == 3


def test_a_dataset_snapshotted_earlier_drops_the_excluded_rows_at_training(voted_campaign, users, client_for):
    second = _second()
    snapshot = client_for("engineer").post(
        "/api/v1/datasets/", {"name": "all", "campaigns": [voted_campaign.pk]}, format="json"
    )
    assert snapshot.status_code == 201 and snapshot.json()["rows"] == 5
    run = core_services.run_create(
        kind="reward_train", config={"dataset": snapshot.json()["id"], "exclude_annotators": [second.pk]}
    )
    _, rows = training_rows(run)
    assert [row.user_id for row in rows] == [users["annotator"].pk] * 2


def test_a_snapshot_through_the_api_leaves_them_out(voted_campaign, client_for):
    second = _second()
    engineer = client_for("engineer")
    body = {"name": "without-second", "campaigns": [voted_campaign.pk], "exclude_annotators": [second.pk]}
    response = engineer.post("/api/v1/datasets/", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["rows"] == 2
    assert response.json()["options"]["exclude_annotators"] == [{"id": second.pk, "username": "second"}]

    unknown = engineer.post("/api/v1/datasets/", {**body, "name": "x", "exclude_annotators": [UNKNOWN]}, format="json")
    assert unknown.status_code == 400
    assert unknown.json()["exclude_annotators"] == [
        f"Unknown user id(s): [{UNKNOWN}]. Give the ids of the annotators to leave out (listed on /people/)."
    ]


@pytest.mark.parametrize("kind", ["reward_train", "preference_tune"])
def test_unknown_ids_are_400_naming_them(voted_campaign, client_for, kind):
    config = {"campaigns": [voted_campaign.pk], "exclude_annotators": [_second().pk, UNKNOWN]}
    if kind == "preference_tune":
        from generators.models import ModelVersion, PromptSet
        from generators.services import prompt_set_create

        eval_set = PromptSet.objects.filter(split="eval").first() or prompt_set_create(
            name="e", split="eval", prompts=["an eval prompt"]
        )
        config |= {"model_version": ModelVersion.objects.first().pk, "eval_prompt_set": eval_set.pk}
    response = client_for("engineer").post("/api/v1/runs/", {"kind": kind, "config": config}, format="json")
    assert response.status_code == 400, response.json()
    assert f"Unknown user id(s): [{UNKNOWN}]" in response.json()["config"]["exclude_annotators"][0]

    config["exclude_annotators"] = [_second().pk, _second().pk]
    accepted = client_for("engineer").post("/api/v1/runs/", {"kind": kind, "config": config}, format="json")
    assert accepted.status_code == 201, accepted.json()
    assert Run.objects.get(pk=accepted.json()["id"]).config["exclude_annotators"] == [_second().pk]


def test_an_imported_file_cannot_exclude_platform_accounts(voted_campaign, client_for, settings, tmp_path):
    imported = _dataset(tmp_path)
    config = {"dataset": imported.pk, "exclude_annotators": [_second().pk]}
    response = client_for("engineer").post("/api/v1/runs/", {"kind": "reward_train", "config": config}, format="json")
    assert response.status_code == 400
    message = response.json()["config"]["exclude_annotators"][0]
    assert f"Dataset {imported.pk} is an imported file" in message and "snapshotted from campaigns" in message


def test_a_reward_train_run_records_whom_it_left_out(voted_campaign, users, settings):
    annotator = users["annotator"]
    run = _reward_run(voted_campaign, exclude_annotators=[annotator.pk], val_fraction=0.3, test_fraction=0.3)
    assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error
    run.refresh_from_db()
    assert run.result["excluded_annotators"] == [{"id": annotator.pk, "username": "annotator"}]
    dataset = PreferenceDataset.objects.get(pk=run.result["dataset"])
    assert dataset.rows == 3 and dataset.stats["annotators"] == 1


@pytest.mark.parametrize("kind", ["reward_train", "preference_tune"])
def test_the_run_forms_offer_the_annotators_to_exclude(voted_campaign, client_for, kind):
    core_services.user_set_active(user=_second(), active=False)
    kinds = {k["name"]: k for k in client_for("engineer").get("/api/v1/run-kinds/").json()}
    spec = next(s for s in kinds[kind]["form"] if s["name"] == "exclude_annotators")
    assert spec["type"] == "list" and spec["item"]["type"] == "id" and "People page" in spec["help_text"]
    labels = {choice["label"] for choice in spec["item"]["choices"]}
    assert f"second (inactive) (#{_second().pk})" in labels
    assert not any(label.startswith("engineer ") for label in labels)  # people who vote: annotators, reviewers


def test_the_person_page_says_how_to_exclude_their_votes(voted_campaign, client, users):
    client.force_login(users["engineer"])
    page = client.get(f"/people/{_second().pk}/").content.decode()
    note = page[page.index('id="exclude-votes"') :]
    assert f'"exclude_annotators": [{_second().pk}]' in note.replace("&quot;", '"')
    assert "/runs/new/reward_train/" in note and "/runs/new/preference_tune/" in note
    assert "export_votes --exclude-user second" in note


def test_the_commands_take_the_ids_to_exclude(voted_campaign, users):
    import io

    from django.core.management import CommandError, call_command

    second = _second()
    options = ["--campaigns", str(voted_campaign.pk), "--exclude-annotators", f"{second.pk}"]
    call_command("train_reward", *options, stdout=io.StringIO(), stderr=io.StringIO())
    assert Run.objects.get(kind="reward_train").config["exclude_annotators"] == [second.pk]
    with pytest.raises(CommandError, match="Unknown user id"):
        options[-1] = str(UNKNOWN)
        call_command("train_reward", *options, stdout=io.StringIO(), stderr=io.StringIO())

    from generators.models import ModelVersion
    from generators.services import prompt_set_create

    eval_set = prompt_set_create(name="e", split="eval", prompts=["an eval prompt"])
    call_command(
        "preference_tune",
        *("--model-version", str(ModelVersion.objects.first().pk), "--campaign", str(voted_campaign.pk)),
        *("--eval-prompt-set", str(eval_set.pk), "--exclude-annotator", str(second.pk)),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    assert Run.objects.get(kind="preference_tune").config["exclude_annotators"] == [second.pk]
