"""A collect campaign of grey squares whose votes follow brightness, for the refit job's tests (rewards, e2e)."""

from __future__ import annotations

import io

from feedback import handout, services
from generators import services as generator_services
from generators.models import ModelVersion
from tests.conftest import make_user
from tests.support.images import store_images

FAST = {"head": "linear", "ensemble_size": 2, "curve_points": 2, "min_votes": 5, "device": "cpu"}
PROMPTS = 24


def png(level: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (level, level, level)).save(buffer, format="PNG")
    return buffer.getvalue()


def grey_campaign(users, django_user_model, *, selection: str = "uncertainty", refit_every: int = 10, name: str = "c"):
    """``PROMPTS`` prompts × two seeds of one version (one pair each), k = 2, two annotators."""
    base = generator_services.base_model_register(name=f"tiny-{name}", source="org/tiny")
    version = ModelVersion.objects.get(base_model=base)
    prompt_set = generator_services.prompt_set_create(
        name=f"p-{name}", split="train", prompts=[f"a grey square {i}" for i in range(PROMPTS)]
    )
    for i, prompt in enumerate(prompt_set.prompts.order_by("id")):
        store_images(version, [(prompt, 0, png(20 + 9 * i)), (prompt, 1, png(235 - 9 * i))])
    second = django_user_model.objects.filter(username="second").first() or make_user(
        django_user_model, "annotator", "second"
    )
    return services.campaign_create(
        name=name,
        purpose="collect",
        prompt_set=prompt_set,
        model_versions=[version],
        annotators=[users["annotator"], second],
        votes_per_pair=2,
        selection=selection,
        refit_every=refit_every,
    ), [users["annotator"], second]


def brighter(lease) -> str:
    """The noiseless judge: the brighter image wins (by pixels, as an annotator would see them)."""
    from PIL import Image

    from generators.models import GeneratedImage

    def level(pk: int) -> int:
        with GeneratedImage.objects.get(pk=pk).file.open("rb") as handle:
            return Image.open(handle).convert("L").getpixel((0, 0))

    a_wins = level(lease.image_a) > level(lease.image_b)
    return "left" if a_wins == lease.a_on_left else "right"


def vote(campaign, annotators, pairs: int) -> None:
    """Each annotator rates its next ``pairs`` pairs as the noiseless judge would."""
    for annotator in annotators:
        for _ in range(pairs):
            lease = handout.next_assignment(annotator=annotator, campaign=campaign)
            services.vote_submit(annotator=annotator, assignment_id=lease.assignment, submitted=brighter(lease))
