"""A generate attempt killed between writing a file and settling it: the run's next attempt leaves no stray file
in storage and no image without its provenance (``PendingImageFile``, ``services.generated_files_recover``)."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from PIL import Image

from core import services as run_services
from core.run_execution import run_execute
from generators import services
from generators.models import GeneratedImage, ModelVersion, PendingImageFile
from generators.png_metadata import read_metadata

pytestmark = pytest.mark.django_db


class Crash(Exception):
    """Stands for the worker being killed at that point."""


def crash(*args, **kwargs):
    raise Crash


@pytest.fixture
def sandbox(settings, tmp_path, users):
    settings.MEDIA_ROOT = tmp_path / "media"
    call_command("sandbox_setup", stdout=io.StringIO())
    one = services.prompt_set_create(name="recovery-one", split="eval", prompts=["a red circle"])
    version = ModelVersion.objects.get(base_model__name="sandbox", name="base")
    config = {"model_versions": [version.pk], "prompt_set": one.pk, "steps": 2}
    run = run_services.run_create(kind="generate", config=config, created_by=users["engineer"])
    return {"version": version, "prompt": one.prompts.get(), "run": run}


def _stored(settings) -> set[str]:
    return {path.name for path in (settings.MEDIA_ROOT / "images").rglob("*.png")}


def _png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _store(sandbox, colour: str = "red", seed: int = 0) -> int:
    return services.generated_images_store_batch(
        model_version=sandbox["version"],
        settings={"steps": 2},
        settings_hash="f" * 64,
        images=[(sandbox["prompt"], seed, _png(colour), 32, 32)],
        generation_run=sandbox["run"],
        provenance=True,
    )


def _store_crashing_at(monkeypatch, owner, attribute: str, sandbox, colour: str = "red") -> None:
    """``_store`` with the worker killed where ``owner.attribute`` is called."""
    with monkeypatch.context() as patched:
        patched.setattr(owner, attribute, crash)
        with pytest.raises(Crash):
            _store(sandbox, colour)


def _image_id_in_file(image: GeneratedImage) -> str | None:
    with image.file.open("rb") as handle, Image.open(handle) as opened:
        return read_metadata(opened).get("image_id")


def test_a_file_written_before_the_insert_is_deleted_by_the_next_attempt(sandbox, settings, monkeypatch):
    _store_crashing_at(monkeypatch, GeneratedImage.objects, "bulk_create", sandbox, "blue")
    assert len(_stored(settings)) == 1 and PendingImageFile.objects.count() == 1  # written, named by no row

    assert run_execute(run_id=sandbox["run"].pk, worker="inline") == "succeeded"

    image = GeneratedImage.objects.get()
    assert _stored(settings) == {f"{image.sha256}.png"}  # the stray file is gone, the run's image is there
    assert _image_id_in_file(image) == str(image.pk)
    assert not PendingImageFile.objects.exists()


def test_rows_inserted_but_not_stamped_are_stamped_by_the_next_attempt(sandbox, settings, monkeypatch):
    _store_crashing_at(monkeypatch, services, "generated_images_stamp", sandbox)
    image = GeneratedImage.objects.get()
    assert _image_id_in_file(image) is None and PendingImageFile.objects.count() == 1

    assert services.generated_files_recover(run=sandbox["run"]) == {"stamped": 1, "deleted": 0}

    image.refresh_from_db()
    assert _image_id_in_file(image) == str(image.pk)
    assert _stored(settings) == {f"{image.sha256}.png"}  # the unstamped file went with the switch
    assert not PendingImageFile.objects.exists()
    assert services.generated_files_recover(run=sandbox["run"]) == {"stamped": 0, "deleted": 0}


def test_an_unstamped_file_left_after_the_switch_is_deleted_by_the_next_attempt(sandbox, settings, monkeypatch):
    _store_crashing_at(monkeypatch, default_storage, "delete", sandbox)
    image = GeneratedImage.objects.get()
    assert _image_id_in_file(image) == str(image.pk)  # switched to the stamped file ...
    assert len(_stored(settings)) == 2  # ... but the unstamped one is still there

    assert services.generated_files_recover(run=sandbox["run"]) == {"stamped": 0, "deleted": 1}

    assert _stored(settings) == {f"{image.sha256}.png"}
    assert not PendingImageFile.objects.exists()


def test_a_key_made_first_elsewhere_keeps_its_file_and_the_copy_is_not_kept(sandbox, settings):
    assert _store(sandbox, "red") == 1
    first = GeneratedImage.objects.get()

    assert _store(sandbox, "green") == 0  # the same key: another worker's bytes lose

    assert GeneratedImage.objects.get() == first
    assert _stored(settings) == {f"{first.sha256}.png"}
    assert not PendingImageFile.objects.exists()
