"""A real worker is SIGKILLed in the middle of a generation run; another finishes it without duplicates, stray files
or unstamped images."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from PIL import Image

from core import services as run_services
from core.models import Run
from generators.models import GeneratedImage, ModelVersion, PendingImageFile, PromptSet
from generators.png_metadata import read_metadata
from tests.support.workers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("broker", ["filesystem"], indirect=True)
def test_killed_generation_run_resumes_and_makes_each_image_once(start_worker, users):
    call_command("sandbox_setup", stdout=io.StringIO())
    version = ModelVersion.objects.get(base_model__name="sandbox")
    prompt_set = PromptSet.objects.get(name="sandbox-eval")
    expected = prompt_set.prompts.count() * 6
    first = start_worker()
    run = run_services.run_create(
        kind="generate",
        config={
            "model_versions": [version.pk],
            "prompt_set": prompt_set.pk,
            "images_per_prompt": 6,
            "batch_size": 4,
            "steps": 10,
        },
        created_by=users["engineer"],
    )
    wait_until(lambda: GeneratedImage.objects.count() >= 24, timeout=120, what="the first worker to store 24 images")
    first.kill()
    made_before_kill = GeneratedImage.objects.count()
    assert made_before_kill < expected

    start_worker()
    done = wait_until(lambda: (r := Run.objects.get(pk=run.pk)).is_terminal and r, timeout=180, what="the resumed run")

    assert done.state == "succeeded", done.error
    assert done.attempts == 2
    assert done.result["already_there"] >= made_before_kill and done.result["images"] == expected
    assert GeneratedImage.objects.count() == expected
    keys = set(GeneratedImage.objects.values_list("prompt_id", "seed"))
    assert len(keys) == expected
    stored = {
        name
        for folder in default_storage.listdir("images")[0]
        for name in default_storage.listdir(f"images/{folder}")[1]
    }
    assert stored == {f"{sha}.png" for sha in GeneratedImage.objects.values_list("sha256", flat=True)}
    assert not PendingImageFile.objects.exists()
    for image in GeneratedImage.objects.all():  # the killed attempt's rows were stamped too
        with image.file.open("rb") as handle, Image.open(handle) as opened:
            assert read_metadata(opened)["image_id"] == str(image.pk)
