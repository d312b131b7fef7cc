"""A small voted campaign for the rewards app's Django tests."""

from __future__ import annotations

import io

import pytest

from rewards.inception_features import enter_torch_fidelity
from tests.conftest import make_user
from tests.support.images import store_images

# torch-fidelity is installed without torchvision on the CPU test install (scripts/bootstrap.sh): register its
# package without the __init__ that imports torchvision, or `import torchmetrics` (whose image metrics import
# torch-fidelity) fails.
enter_torch_fidelity()


def png(shade: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade % 256, 40, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def voted_campaign(users, settings, tmp_path, django_user_model):
    """3 prompts × 1 pair, k=2; annotator votes left, tie, skip; a second annotator votes right on all."""
    from feedback import handout, services
    from generators import services as generator_services
    from generators.models import ModelVersion

    settings.MEDIA_ROOT = tmp_path
    base = generator_services.base_model_register(name="tiny", source="org/tiny")
    version = ModelVersion.objects.get(base_model=base)
    prompt_set = generator_services.prompt_set_create(
        name="p", split="train", prompts=[f"prompt {i}" for i in range(3)]
    )
    for prompt in prompt_set.prompts.all():
        store_images(version, [(prompt, seed, png(prompt.pk * 10 + seed)) for seed in (0, 1)])
    second = make_user(django_user_model, "annotator", "second")
    campaign = services.campaign_create(
        name="c",
        purpose="collect",
        prompt_set=prompt_set,
        model_versions=[version],
        annotators=[users["annotator"], second],
        votes_per_pair=2,
    )
    for annotator, choices in ((users["annotator"], ["left", "tie", "skip"]), (second, ["right"] * 3)):
        for choice in choices:
            assignment = handout.next_assignment(annotator=annotator, campaign=campaign)
            services.vote_submit(annotator=annotator, assignment_id=assignment.assignment, submitted=choice)
    return campaign
