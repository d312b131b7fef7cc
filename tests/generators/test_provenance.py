"""Provenance of generated images: PNG text chunks, the watermark through a real generate run, identify_image and
POST /api/v1/provenance/ (roles, validation)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from core import services as run_services
from core.run_execution import run_execute
from generators import services
from generators.models import BaseModel, GeneratedImage, ModelVersion
from generators.png_metadata import read_metadata
from tests.generators.test_watermark import texture

pytestmark = pytest.mark.django_db


@pytest.fixture
def sandbox(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    call_command("sandbox_setup", stdout=io.StringIO())
    one = services.prompt_set_create(name="provenance-one", split="eval", prompts=["a red circle"])
    return {"version": ModelVersion.objects.get(base_model__name="sandbox", name="base"), "set": one}


def _generate(sandbox, users, **overrides) -> GeneratedImage:
    config = {"model_versions": [sandbox["version"].pk], "prompt_set": sandbox["set"].pk, "steps": 2, **overrides}
    run = run_services.run_create(kind="generate", config=config, created_by=users["engineer"])
    assert run_execute(run_id=run.pk, worker="inline") == "succeeded"
    return GeneratedImage.objects.get(generation_run=run)


def _opened(image: GeneratedImage) -> Image.Image:
    with image.file.open("rb") as handle:
        opened = Image.open(io.BytesIO(handle.read()))
        opened.load()
    return opened


def _pixels_only(image: Image.Image, path) -> str:
    """The image's pixels in a PNG with no text chunks (what a screenshot or a re-save leaves)."""
    Image.frombytes("RGB", image.size, image.convert("RGB").tobytes()).save(path, format="PNG")
    return str(path)


def test_a_generated_png_carries_its_provenance_as_text(sandbox, users, settings):
    image = _generate(sandbox, users, seed=5)  # the sandbox's native 32×32: too small for the watermark

    metadata = read_metadata(_opened(image))
    assert metadata["image_id"] == str(image.pk)
    assert metadata["version_id"] == str(sandbox["version"].pk) and metadata["version"] == "sandbox/base"
    assert metadata["base_checkpoint"] == sandbox["version"].base_model.source
    assert metadata["adapter_sha256"] == ""  # the base version has no adapter
    assert metadata["prompt"] == "a red circle" and metadata["seed"] == "5"
    assert json.loads(metadata["sampler_settings"]) == image.settings
    assert metadata["run_id"] == str(image.generation_run_id)
    assert metadata["platform_instance"] == str(settings.PROVENANCE_INSTANCE)
    assert metadata["watermark"].startswith("none: a 32x32 image is under the 256x256 pixels")
    assert image.file.name == f"images/{image.sha256[:2]}/{image.sha256}.png"  # still content-addressed
    assert GeneratedImage.objects.count() == 1
    assert sorted(p.name for p in (settings.MEDIA_ROOT / "images").rglob("*.png")) == [f"{image.sha256}.png"]


def test_identify_image_round_trips_a_generated_image_by_metadata_and_by_watermark(sandbox, users, tmp_path):
    image = _generate(sandbox, users, width=256, height=256, seed=11)
    stored = _opened(image)
    assert read_metadata(stored)["watermark"] == f"dwtDctSvd instance=1 image_id={image.pk}"
    original = tmp_path / "original.png"
    original.write_bytes(image.file.open("rb").read())

    out = io.StringIO()
    call_command("identify_image", str(original), "--json", stdout=out)
    answer = json.loads(out.getvalue())
    assert answer["identified"] and answer["recognised_by"] == ["metadata", "watermark"]
    assert answer["image"]["id"] == image.pk and answer["image"]["version"] == "sandbox/base"
    assert (answer["image"]["prompt"], answer["image"]["seed"]) == ("a red circle", 11)

    # Pixels only (no text chunks), then a half-size copy: the watermark alone names the image.
    stripped = _pixels_only(stored, tmp_path / "stripped.png")
    out = io.StringIO()
    call_command("identify_image", stripped, stdout=out)
    text = out.getvalue()
    assert f"Image {image.pk}: version sandbox/base (id {sandbox['version'].pk}), seed 11" in text
    assert "Prompt: a red circle" in text and "Recognised by: watermark" in text
    stored.convert("RGB").resize((128, 128), Image.Resampling.BICUBIC).save(tmp_path / "half.png")
    out = io.StringIO()
    call_command("identify_image", str(tmp_path / "half.png"), "--json", stdout=out)
    answer = json.loads(out.getvalue())
    assert answer["image"]["id"] == image.pk and answer["watermark"]["how"] == "rescaled ×2"


def test_a_base_model_with_the_watermark_off_gets_metadata_only(sandbox, users, tmp_path):
    BaseModel.objects.filter(name="sandbox").update(watermark=False)
    image = _generate(sandbox, users, width=256, height=256, seed=12)
    stored = _opened(image)
    assert read_metadata(stored)["watermark"] == "none: off for base model sandbox"

    with pytest.raises(CommandError, match="Not identified"):
        call_command("identify_image", _pixels_only(stored, tmp_path / "plain.png"), stdout=io.StringIO())


def test_identify_image_refuses_what_is_not_an_image(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CommandError, match="not an image"):
        call_command("identify_image", str(tmp_path / "notes.txt"))
    with pytest.raises(CommandError, match="No such file"):
        call_command("identify_image", str(tmp_path / "missing.png"))


@pytest.fixture
def stamped(settings, tmp_path):
    """A 256×256 image stored as a generate run stores one (text chunks, then the watermark of its id)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    base = services.base_model_register(name="tiny", source="org/tiny", default_settings={"width": 256, "height": 256})
    version = base.versions.get()
    prompt = services.prompt_set_create(name="few", split="eval", prompts=["a blue square"]).prompts.get()
    png = io.BytesIO()
    texture(256, seed=4).save(png, format="PNG")
    made = services.generated_images_store_batch(
        model_version=version,
        settings={"width": 256, "height": 256},
        settings_hash="h",
        images=[(prompt, 3, png.getvalue(), 256, 256)],
        provenance=True,
    )
    assert made == 1
    return GeneratedImage.objects.get()


def _upload(client, data: bytes, name: str = "image.png"):
    return client.post("/api/v1/provenance/", {"file": _named(data, name)}, format="multipart")


def _named(data: bytes, name: str):
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def _png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def test_the_provenance_api_identifies_an_upload_for_staff_only(stamped, client_for):
    data = stamped.file.open("rb").read()
    stripped = _png_bytes(Image.open(io.BytesIO(data)).convert("RGB"))

    for role in ("reviewer", "engineer", "admin"):
        answer = _upload(client_for(role), stripped)
        assert answer.status_code == 200, answer.content
        body = answer.json()
        assert body["identified"] and body["recognised_by"] == ["watermark"]
        assert (body["image"]["id"], body["image"]["prompt"], body["image"]["seed"]) == (stamped.pk, "a blue square", 3)
        assert body["watermark"]["image_id"] == stamped.pk and body["metadata"] == {}
    assert _upload(client_for("engineer"), data).json()["recognised_by"] == ["metadata", "watermark"]
    assert _upload(client_for("annotator"), data).status_code == 403
    assert _upload(client_for("norole"), data).status_code == 403
    assert _upload(client_for(None), data).status_code == 401


def test_the_provenance_api_says_what_to_fix(stamped, client_for, settings):
    client = client_for("reviewer")

    missing = client.post("/api/v1/provenance/", {}, format="multipart")
    assert missing.status_code == 400 and "file" in missing.json()
    not_image = _upload(client, b"plain text, not pixels", "notes.png")
    assert not_image.status_code == 400 and "not an image" in not_image.json()["file"][0]

    settings.PROVENANCE_MAX_UPLOAD_BYTES = 1000
    too_large = _upload(client, stamped.file.open("rb").read())
    assert too_large.status_code == 400
    assert "larger than the limit of 1000 bytes (PROVENANCE_MAX_UPLOAD_BYTES)" in too_large.json()["file"][0]

    settings.PROVENANCE_MAX_UPLOAD_BYTES = 10**6
    settings.PROVENANCE_MAX_PIXELS = 100
    too_many = _upload(client, _png_bytes(Image.new("RGB", (20, 20))))
    assert too_many.status_code == 400 and "PROVENANCE_MAX_PIXELS" in too_many.json()["file"][0]

    settings.PROVENANCE_MAX_PIXELS = 10**6
    unknown = _upload(client, _png_bytes(texture(256, seed=8)))
    assert unknown.status_code == 200 and unknown.json()["identified"] is False
    assert unknown.json()["notes"] == ["No watermark could be read."]
