"""Runs over REST: validated configs, filters, detail with metrics, cancel, 404s, 409s."""

from __future__ import annotations

import pytest

from core import services

pytestmark = pytest.mark.django_db


def _create(client, body):
    return client.post("/api/v1/runs/", body, format="json")


def test_create_returns_the_queued_run_with_validated_defaults(engineer_client):
    response = _create(engineer_client, {"kind": "diagnostic", "config": {"steps": 4}})

    assert response.status_code == 201
    body = response.json()
    assert body["state"] == "queued"
    assert body["queue"] == "gpu"
    assert body["created_by"] == "engineer"
    assert body["config"] == {
        "steps": 4,
        "step_seconds": 0.2,
        "matrix_size": 256,
        "device": "auto",
        "fail_at_step": None,
    }
    assert [h["state"] for h in body["state_history"]] == ["queued"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"kind": "diagnostic", "config": {"steps": 0}}, ("config", "steps")),
        ({"kind": "diagnostic", "config": {"steps": "many"}}, ("config", "steps")),
        ({"kind": "diagnostic", "config": {"device": "tpu"}}, ("config", "device")),
        ({"kind": "diagnostic", "config": {"stpes": 3}}, ("config", "stpes")),
        ({"kind": "diagnostic", "config": [1, 2]}, ("config",)),
        ({"kind": "nonsense"}, ("kind",)),
        ({"kind": "finetune", "config": {}}, ("config", "model_version")),
        ({"kind": "generate", "config": {}}, ("config", "model_versions")),
        ({"config": {}}, ("kind",)),
        ({"kind": "diagnostic", "max_attempts": 0}, ("max_attempts",)),
        ({"kind": "diagnostic", "priority": 1}, ("priority",)),
    ],
)
def test_invalid_input_is_400_naming_the_field(engineer_client, body, path):
    response = _create(engineer_client, body)

    assert response.status_code == 400
    errors = response.json()
    for key in path:
        assert key in errors, errors
        errors = errors[key]


def test_unknown_config_key_error_lists_known_fields(engineer_client):
    errors = _create(engineer_client, {"kind": "diagnostic", "config": {"stpes": 3}}).json()
    assert "Known fields" in errors["config"]["stpes"][0]
    assert "steps" in errors["config"]["stpes"][0]


def test_unregistered_kind_says_which_kinds_exist(engineer_client, monkeypatch):
    from core import run_kinds

    monkeypatch.delitem(run_kinds._REGISTRY, "finetune")  # a worker image without the fine-tuning app
    errors = _create(engineer_client, {"kind": "finetune"}).json()
    message = errors["kind"][0]
    assert message.startswith("Run kind 'finetune' is not available. Available kinds: ")
    listed = message.split("Available kinds: ")[1].rstrip(".").split(", ")
    assert listed == sorted(run_kinds._REGISTRY) and "finetune" not in listed
    assert {"dataset_import", "diagnostic", "evaluate", "generate", "preference_tune", "reward_train"} <= set(listed)


def test_list_filters_by_kind_state_and_creator(client_for, users):
    first = services.run_create(kind="diagnostic", config={}, created_by=users["engineer"])
    services.run_create(kind="diagnostic", config={}, created_by=users["admin"])
    services.run_request_cancel(run_id=first.pk)
    reviewer = client_for("reviewer")

    assert reviewer.get("/api/v1/runs/").json()["count"] == 2
    assert [r["id"] for r in reviewer.get("/api/v1/runs/?state=cancelled").json()["results"]] == [first.pk]
    assert reviewer.get("/api/v1/runs/?created_by=admin").json()["count"] == 1
    assert reviewer.get("/api/v1/runs/?kind=diagnostic").json()["count"] == 2
    assert reviewer.get("/api/v1/runs/?state=exploded").status_code == 400


def test_detail_has_every_metric_series_in_step_order(client_for, users):
    run = services.run_create(kind="diagnostic", config={}, created_by=users["engineer"])
    attempt = services.run_claim(run_id=run.pk, worker="w1").attempt
    services.metrics_log(run_id=run.pk, attempt=attempt, step=2, values={"loss": 0.5, "lr": 1e-3})
    services.metrics_log(run_id=run.pk, attempt=attempt, step=1, values={"loss": 0.9})
    services.metrics_log(run_id=run.pk, attempt=attempt, step=3, values={"loss": float("nan")})

    body = client_for("reviewer").get(f"/api/v1/runs/{run.pk}/").json()

    assert body["metrics"] == {"loss": [[1, 0.9], [2, 0.5], [3, None]], "lr": [[2, 0.001]]}


@pytest.mark.parametrize("path", ["/api/v1/runs/999999/", "/api/v1/runs/999999/cancel/"])
def test_unknown_run_is_404(engineer_client, path):
    method = engineer_client.post if path.endswith("cancel/") else engineer_client.get
    assert method(path).status_code == 404


def test_cancel_queued_run_is_immediate_and_cancel_of_finished_run_is_409(engineer_client, users):
    run = services.run_create(kind="diagnostic", config={}, created_by=users["engineer"])

    first = engineer_client.post(f"/api/v1/runs/{run.pk}/cancel/")
    second = engineer_client.post(f"/api/v1/runs/{run.pk}/cancel/")

    assert first.status_code == 202 and first.json()["state"] == "cancelled"
    assert second.status_code == 409
    assert "cannot become cancelling" in second.json()["detail"]


def test_run_kinds_lists_config_fields(client_for):
    kinds = {kind["name"]: kind for kind in client_for("reviewer").get("/api/v1/run-kinds/").json()}
    assert "steps" in kinds["diagnostic"]["config_fields"]
    assert (kinds["dataset_import"]["queue"], kinds["dataset_import"]["config_fields"]) == ("default", ["dataset"])


def test_reviewers_start_only_generation_and_scoring_runs(client_for):
    reviewer, annotator = client_for("reviewer"), client_for("annotator")
    for kind in ("diagnostic", "reward_train", "finetune", "dataset_import"):
        assert reviewer.post("/api/v1/runs/", {"kind": kind, "config": {}}, format="json").status_code == 403
    # generate/evaluate pass the role check and reach config validation (an empty config is a 400).
    for kind in ("generate", "evaluate"):
        assert reviewer.post("/api/v1/runs/", {"kind": kind, "config": {}}, format="json").status_code == 400
        assert annotator.post("/api/v1/runs/", {"kind": kind, "config": {}}, format="json").status_code == 403


def _claimed_run(users) -> services.Claim:
    run = services.run_create(kind="diagnostic", config={}, created_by=users["engineer"])
    return services.run_claim(run_id=run.pk, worker="test")


def test_engineers_download_an_artifact_streamed_with_its_name_and_type(settings, tmp_path, client_for, users):
    settings.MEDIA_ROOT = tmp_path
    claim = _claimed_run(users)
    payload = bytes(range(256)) * 4096  # 1 MiB
    artifact = services.artifact_save(
        run=claim.run, attempt=claim.attempt, name="reward_model.zip", data=payload, kind="reward_model"
    )
    url = f"/api/v1/artifacts/{artifact.pk}/download/"

    for role in ("engineer", "admin"):
        response = client_for(role).get(url)
        assert response.status_code == 200
        assert response.streaming and b"".join(response.streaming_content) == payload
        assert response["Content-Type"] == "application/zip"
        assert response["Content-Disposition"] == 'attachment; filename="reward_model.zip"'
        assert response["Content-Length"] == str(len(payload))
        assert response["ETag"] == f'"{artifact.sha256}"'
    # Reviewers see the artifact's name, size and hash on the run, not the weights; annotators nothing.
    assert client_for("reviewer").get(url).status_code == 403
    assert client_for("annotator").get(url).status_code == 403
    assert client_for(None).get(url).status_code == 401
    unnamed = services.artifact_save(
        run=claim.run, attempt=claim.attempt, name="checkpoint", data=b"state", kind="checkpoint"
    )
    assert client_for("engineer").get(f"/api/v1/artifacts/{unnamed.pk}/download/")["Content-Type"] == (
        "application/octet-stream"
    )


def test_downloading_a_missing_artifact_or_file_is_a_404(settings, tmp_path, client_for, users):
    settings.MEDIA_ROOT = tmp_path
    claim = _claimed_run(users)
    artifact = services.artifact_save(
        run=claim.run, attempt=claim.attempt, name="adapter.safetensors", data=b"weights", kind="adapter"
    )
    (tmp_path / artifact.file.name).unlink()
    engineer = client_for("engineer")

    assert engineer.get(f"/api/v1/artifacts/{artifact.pk + 1}/download/").status_code == 404
    missing = engineer.get(f"/api/v1/artifacts/{artifact.pk}/download/")
    assert missing.status_code == 404 and "missing from storage" in missing.json()["detail"]
    assert str(tmp_path) not in missing.content.decode()
