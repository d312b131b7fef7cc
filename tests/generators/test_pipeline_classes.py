"""A base model's pipeline_class must name a diffusers pipeline class: checked in the web process and on load."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from generators import services
from generators.models import BaseModel
from generators.pipeline import PipelineLoadError, PipelineSpec, diffusers_pipeline_class, load_pipeline
from generators.pipeline_classes import TEXT_TO_IMAGE_PIPELINES
from generators.sandbox import PIPELINE_PATH

pytestmark = pytest.mark.django_db
HUB_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"


@pytest.mark.parametrize("pipeline_class", ["os.system", "ModelMixin", "utils", "StableDiffusionPipeline.x", ""])
def test_a_pipeline_class_that_is_not_a_diffusers_pipeline_is_400(engineer_client, pipeline_class):
    body = {"name": "sd15", "source": HUB_ID, "pipeline_class": pipeline_class}
    response = engineer_client.post("/api/v1/base-models/", body, format="json")
    assert response.status_code == 400, response.json()
    assert "pipeline_class" in response.json()
    assert not BaseModel.objects.filter(name="sd15").exists()


def test_a_diffusers_pipeline_class_is_accepted_and_operators_may_add_one(engineer_client, settings):
    ok = engineer_client.post(
        "/api/v1/base-models/",
        {"name": "sdxl", "source": HUB_ID, "pipeline_class": "StableDiffusionXLPipeline"},
        format="json",
    )
    body = {"name": "img2img", "source": HUB_ID, "pipeline_class": "StableDiffusionImg2ImgPipeline"}
    refused = engineer_client.post("/api/v1/base-models/", body, format="json")
    settings.EXTRA_PIPELINE_CLASSES = ["StableDiffusionImg2ImgPipeline"]
    added = engineer_client.post("/api/v1/base-models/", body, format="json")
    assert ok.status_code == 201 and ok.json()["pipeline_class"] == "StableDiffusionXLPipeline"
    assert refused.status_code == 400 and "EXTRA_PIPELINE_CLASSES" in refused.json()["pipeline_class"][0]
    assert added.status_code == 201


def test_the_registration_service_refuses_it_too():
    with pytest.raises(ValidationError) as caught:
        services.base_model_register(name="evil", source=HUB_ID, pipeline_class="os.system")
    assert "pipeline_class" in caught.value.message_dict


@pytest.mark.parametrize("name", TEXT_TO_IMAGE_PIPELINES)
def test_every_allowed_name_is_a_pipeline_class_of_the_installed_diffusers(name):
    assert diffusers_pipeline_class(name).__name__ == name


@pytest.mark.parametrize("name", ["os.system", "ModelMixin", "UNet2DConditionModel", "utils", "DDIMScheduler"])
def test_loading_refuses_what_is_not_a_pipeline_class(name):
    with pytest.raises(PipelineLoadError, match="not a diffusers pipeline class"):
        load_pipeline(PipelineSpec(source=str(PIPELINE_PATH), pipeline_class=name, device="cpu"))
