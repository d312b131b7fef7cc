"""Generation runs through the platform: registration, validation, idempotent runs, files, cancel, errors."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.management import call_command
from PIL import Image

from core import services as run_services
from core.jobs import JobCancelled
from core.models import Run
from core.run_execution import run_execute
from generators import executors
from generators.models import BaseModel, GeneratedImage, ModelVersion, PromptSet

pytestmark = pytest.mark.django_db


@pytest.fixture
def sandbox(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    call_command("sandbox_setup", stdout=io.StringIO())
    return {
        "version": ModelVersion.objects.get(base_model__name="sandbox", name="base"),
        "eval": PromptSet.objects.get(name="sandbox-eval"),
        "train": PromptSet.objects.get(name="sandbox-train"),
    }


def _generate_config(sandbox, **overrides) -> dict:
    return {"model_versions": [sandbox["version"].pk], "prompt_set": sandbox["eval"].pk, "steps": 4, **overrides}


def test_sandbox_setup_is_idempotent_and_splits_cover_every_colour_and_shape(sandbox):
    call_command("sandbox_setup", stdout=io.StringIO())
    assert BaseModel.objects.count() == 2 and ModelVersion.objects.count() == 2  # the DDIM and the flow sandbox
    assert sandbox["version"].aliases.get().name == "champion"
    flow = BaseModel.objects.get(name="sandbox-flow")
    assert flow.pipeline_class == "StableDiffusion3Pipeline" and flow.default_settings["scheduler"] == "flow_euler"
    assert not flow.versions.get().aliases.exists()
    eval_tags = {tag for p in sandbox["eval"].prompts.all() for tag in p.tags}
    train_tags = {tag for p in sandbox["train"].prompts.all() for tag in p.tags}
    assert {"red", "cyan", "circle", "cross"} <= eval_tags & train_tags
    assert not set(sandbox["eval"].prompts.values_list("text", flat=True)) & set(
        sandbox["train"].prompts.values_list("text", flat=True)
    )


def test_generate_run_stores_content_addressed_pngs_and_a_rerun_makes_nothing_new(sandbox, users):
    run = run_services.run_create(
        kind="generate",
        config=_generate_config(sandbox, images_per_prompt=2, batch_size=16),
        created_by=users["engineer"],
    )

    assert run_execute(run_id=run.pk, worker="inline") == "succeeded"

    run.refresh_from_db()
    prompts = sandbox["eval"].prompts.count()
    assert run.result["images"] == run.result["created"] == 2 * prompts
    version = sandbox["version"]
    assert run.result["versions"][str(version.pk)]["name"] == "sandbox/base"  # keyed by id, the name for display
    assert run.result["versions"][str(version.pk)]["created"] == 2 * prompts
    assert GeneratedImage.objects.count() == 2 * prompts
    image = GeneratedImage.objects.filter(prompt__text="a red circle", seed=1).get()
    data = image.file.read()
    assert (
        hashlib.sha256(data).hexdigest() == image.sha256
        and image.file.name == f"images/{image.sha256[:2]}/{image.sha256}.png"
    )
    assert Image.open(io.BytesIO(data)).size == (32, 32) == (image.width, image.height)
    assert image.settings == {
        "scheduler": "ddim",
        "steps": 4,
        "guidance_scale": 5.0,
        "width": 32,
        "height": 32,
        "negative_prompt": "",
        "eta": 0.0,
        "dtype": "fp32",
    }
    assert run.metric_points.filter(key="images_per_second").exists()

    again = run_services.run_create(
        kind="generate", config=_generate_config(sandbox, images_per_prompt=3), created_by=users["engineer"]
    )
    run_execute(run_id=again.pk, worker="inline")

    again.refresh_from_db()
    assert again.result["created"] == prompts and again.result["already_there"] == 2 * prompts
    assert GeneratedImage.objects.count() == 3 * prompts
    assert GeneratedImage.objects.filter(prompt__text="a red circle", seed=1).get().pk == image.pk


def test_different_settings_make_different_images(sandbox, users):
    for steps in (3, 4):
        run = run_services.run_create(
            kind="generate", config=_generate_config(sandbox, steps=steps), created_by=users["engineer"]
        )
        run_execute(run_id=run.pk, worker="inline")
    assert GeneratedImage.objects.values("settings_hash").distinct().count() == 2


def test_image_file_endpoint_serves_the_png(sandbox, users, client_for):
    run = run_services.run_create(kind="generate", config=_generate_config(sandbox), created_by=users["engineer"])
    run_execute(run_id=run.pk, worker="inline")
    image = GeneratedImage.objects.first()

    response = client_for("reviewer").get(f"/api/v1/images/{image.pk}/file/")

    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == image.sha256
    listed = client_for("reviewer").get(f"/api/v1/images/?generation_run={run.pk}").json()
    assert listed["count"] == sandbox["eval"].prompts.count()
    assert client_for("reviewer").get("/api/v1/images/999999/file/").status_code == 404


class _StopAfter:
    """A JobContext that asks the job to stop after ``batches`` batches."""

    run_id, attempt = 0, 1

    def __init__(self, batches: int) -> None:
        self.left = batches

    def should_stop(self) -> bool:
        self.left -= 1
        return self.left < 0

    def log_metrics(self, step, values) -> None: ...
    def report_progress(self, fraction, message="") -> None: ...


def test_cancel_is_checked_between_batches(sandbox, users):
    run = run_services.run_create(
        kind="generate", config=_generate_config(sandbox, batch_size=5), created_by=users["engineer"]
    )

    with pytest.raises(JobCancelled, match="stopped after 10 of 24 images"):
        executors.generate(Run.objects.get(pk=run.pk), _StopAfter(batches=2))

    assert GeneratedImage.objects.count() == 10


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"model_versions": [999]}, "model_versions"),
        ({"model_versions": []}, "model_versions"),
        ({"prompt_set": 999}, "prompt_set"),
        ({"width": 33}, "width"),
        ({"height": 4096}, "height"),
        ({"scheduler": "magic"}, "scheduler"),
        ({"steps": 0}, "steps"),
        ({"images_per_prompt": 100_000}, "images_per_prompt"),
        ({"dtype": "int8"}, "dtype"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_generation_config_is_400_naming_the_field(sandbox, engineer_client, overrides, field):
    response = engineer_client.post(
        "/api/v1/runs/", {"kind": "generate", "config": _generate_config(sandbox, **overrides)}, format="json"
    )

    assert response.status_code == 400
    assert field in response.json()["config"], response.json()


def test_empty_prompt_set_is_400(sandbox, engineer_client):
    empty = PromptSet.objects.create(name="empty", split="eval")
    response = engineer_client.post(
        "/api/v1/runs/", {"kind": "generate", "config": _generate_config(sandbox, prompt_set=empty.pk)}, format="json"
    )
    assert response.status_code == 400
    assert "is empty" in response.json()["config"]["prompt_set"][0]


def test_the_flow_sandbox_generates_with_its_own_sampler_and_refuses_a_ddim_one(sandbox, users, engineer_client):
    flow = ModelVersion.objects.get(base_model__name="sandbox-flow", name="base")
    config = {"model_versions": [flow.pk], "prompt_set": sandbox["eval"].pk, "images_per_prompt": 1}
    run = run_services.run_create(kind="generate", config=config, created_by=users["engineer"])
    assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error
    images = GeneratedImage.objects.filter(model_version=flow)
    assert images.count() == sandbox["eval"].prompts.count()
    assert {(i.width, i.height) for i in images} == {(32, 32)}
    assert images.first().settings["scheduler"] == "flow_euler" and images.first().settings["steps"] == 10

    response = engineer_client.post(
        "/api/v1/runs/", {"kind": "generate", "config": {**config, "scheduler": "ddim"}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["config"]["scheduler"] == [
        "sandbox-flow/base: StableDiffusion3Pipeline is a flow-matching model: use the scheduler flow_euler."
    ]
    both = {**config, "model_versions": [flow.pk, sandbox["version"].pk], "scheduler": "flow_euler"}
    response = engineer_client.post("/api/v1/runs/", {"kind": "generate", "config": both}, format="json")
    assert "flow_euler samples flow-matching models (SD3, FLUX) only" in response.json()["config"]["scheduler"][0]

    forged = Run.objects.get(pk=run.pk)  # past validation (an auto pipeline class is checked when it loads)
    Run.objects.filter(pk=run.pk).update(state="queued", config={**forged.config, "scheduler": "ddim"})
    assert run_execute(run_id=run.pk, worker="inline") == "failed"
    error = Run.objects.get(pk=run.pk).error
    assert "StableDiffusion3Pipeline is a flow-matching model: its scheduler is flow_euler, not ddim" in error


def test_a_flow_model_registered_with_a_ddim_default_is_refused(engineer_client):
    body = {
        "name": "sd35",
        "source": "stabilityai/stable-diffusion-3.5-medium",
        "pipeline_class": "StableDiffusion3Pipeline",
        "default_settings": {"scheduler": "ddim"},
    }
    response = engineer_client.post("/api/v1/base-models/", body, format="json")
    assert response.status_code == 400
    assert "use the scheduler flow_euler" in response.json()["default_settings"]["scheduler"][0]


def test_unreadable_checkpoint_fails_the_run_with_a_readable_message(sandbox, users, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    base = BaseModel.objects.create(name="broken", source=str(broken))
    version = ModelVersion.objects.create(base_model=base, name="base")
    run = run_services.run_create(
        kind="generate", config=_generate_config(sandbox, model_versions=[version.pk]), created_by=users["engineer"]
    )

    assert run_execute(run_id=run.pk, worker="inline") == "failed"

    run.refresh_from_db()
    assert run.error.startswith("Model version broken/base cannot generate: Could not load the checkpoint")
    assert "Traceback" not in run.error


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "source": "/no/such/folder"}, "source"),
        ({"name": "x", "source": "just-a-name"}, "source"),
        ({"name": "bad name!", "source": "org/model"}, "name"),
        ({"name": "sandbox", "source": "org/model"}, "name"),
        ({"name": "x", "source": "org/model", "default_settings": {"steps": 0}}, "default_settings"),
    ],
)
def test_bad_base_model_registration_is_400(sandbox, engineer_client, body, field):
    response = engineer_client.post("/api/v1/base-models/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_registering_a_base_model_creates_its_base_version(engineer_client):
    response = engineer_client.post(
        "/api/v1/base-models/", {"name": "sd15", "source": "stable-diffusion-v1-5/stable-diffusion-v1-5"}, format="json"
    )
    assert response.status_code == 201
    assert ModelVersion.objects.get(base_model_id=response.json()["id"]).name == "base"


def test_prompt_sets_never_mix_splits(sandbox, engineer_client):
    clash = engineer_client.post(
        "/api/v1/prompt-sets/", {"name": "more-train", "split": "train", "prompts": ["a red circle"]}, format="json"
    )
    ok = engineer_client.post(
        "/api/v1/prompt-sets/",
        {"name": "more-eval", "split": "eval", "prompts": ["a red circle", {"text": "a tiny dot", "tags": ["new"]}]},
        format="json",
    )
    dupes = engineer_client.post(
        "/api/v1/prompt-sets/", {"name": "dupes", "split": "eval", "prompts": ["x", "x"]}, format="json"
    )

    assert clash.status_code == 400 and "another split" in clash.json()["prompts"][0]
    assert ok.status_code == 201 and [p["text"] for p in ok.json()["prompts"]] == ["a red circle", "a tiny dot"]
    assert dupes.status_code == 400


def test_model_versions_are_immutable(sandbox):
    from django.core.exceptions import ValidationError

    version = sandbox["version"]
    version.notes = "changed"
    with pytest.raises(ValidationError, match="immutable"):
        version.save()


def test_images_for_finds_exactly_the_images_a_run_made_under_its_settings(sandbox, users):
    """The one selector resolves settings as the run does, native size included (recorded by the first run)."""
    from generators.sampler_settings import SettingsRequest
    from generators.selectors import images_for

    base = BaseModel.objects.create(
        name="no-size", source=sandbox["version"].base_model.source, pipeline_class="StableDiffusionPipeline"
    )
    version = ModelVersion.objects.create(base_model=base, name="base")
    prompt_ids = list(sandbox["eval"].items.values_list("prompt_id", flat=True))
    assert images_for([version.pk], prompt_ids, [0], SettingsRequest()) == {}  # no size known: nothing to find
    runs = {}
    for steps in (4, 3):
        runs[steps] = run_services.run_create(
            kind="generate", config=_generate_config(sandbox, model_versions=[version.pk], steps=steps)
        )
        assert run_execute(run_id=runs[steps].pk, worker="inline") == "succeeded"

    base.refresh_from_db()
    assert base.default_settings == {"width": 32, "height": 32}  # the native size, recorded by the first run
    for steps, run in runs.items():
        made = set(GeneratedImage.objects.filter(generation_run=run).values_list("pk", flat=True))
        for dtype in ("auto", "fp32"):
            found = images_for([version.pk], prompt_ids, [0], SettingsRequest(steps=steps, dtype=dtype))
            assert {image.pk for image in found.values()} == made and len(made) == len(prompt_ids)
        assert set(found) == {(version.pk, prompt_id, 0) for prompt_id in prompt_ids}
    assert images_for([version.pk], prompt_ids, [0], SettingsRequest(steps=3, dtype="bf16")) == {}
    assert images_for([version.pk], prompt_ids, [0], SettingsRequest()) == {}  # 20 steps: never made
