"""Safety screens: the registry kind, the answer checks, the sandbox's screen on real sandbox images, the
verdicts table (written by the service, read by the selectors)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from django.db import IntegrityError, transaction

from core import plugins
from generators import selectors, services
from generators.models import GeneratedImage, ImageScreening, ModelVersion, Prompt
from generators.pipeline import SamplerSettings, generate_images_splitting_on_oom
from generators.safety_screens import (
    MAX_REASON,
    ScreenError,
    ScreenVerdict,
    check_screen_name,
    resolve_screen,
    screen_images,
    screen_names,
)
from generators.sandbox.dataset import COLOURS, render
from generators.sandbox.screens import sandbox_red
from generators.sandbox_catalog import sandbox_prompts


def test_safety_screen_is_a_plugin_kind_with_its_entry_point_group():
    kind = plugins.KINDS["safety_screen"]
    assert kind.entry_point_group == "imagerlhf.safety_screens" and kind.must_be_callable
    assert {"sandbox_red", "sd_safety_checker"} <= set(screen_names())
    assert plugins.get("safety_screen", "sd_safety_checker").origin == "built-in"


def test_an_unknown_screen_is_refused_listing_the_registered_ones_and_nothing_is_imported(settings):
    target = "tests.core.plugin_tripwire"
    for name in ("nope", f"{target}:touch", "generators.sandbox.screens:sandbox_red"):
        with pytest.raises(ScreenError, match=r"Unknown safety_screen .*Registered: .*sandbox_red, sd_safety_checker"):
            check_screen_name(name)
    settings.PLUGINS = {"safety_screen": {"tripwire": f"{target}:touch"}}
    assert check_screen_name("tripwire") == "tripwire"  # registered: accepted, still not imported
    assert target not in sys.modules
    assert resolve_screen("sandbox_red") is sandbox_red


def _bad_screen(prompt, image):
    return {"reason": "a dict"}


def test_screen_images_checks_each_answer_and_names_the_screen():
    answers = iter([None, "too red", "", "x" * (MAX_REASON + 1), 3])

    def screen(prompt, image):
        return next(answers)

    image = np.zeros((4, 4, 3), np.uint8)
    assert screen_images(screen, [("a", image), ("b", image)], name="house") == [
        ScreenVerdict(flagged=False, reason=""),
        ScreenVerdict(flagged=True, reason="too red"),
    ]
    for shown in ("''", "'xxx", "3"):
        with pytest.raises(ScreenError, match=rf"safety screen 'house' answered {shown}.*None or a reason"):
            screen_images(screen, [("c", image)], name="house")
    with pytest.raises(ScreenError, match="safety screen '_bad_screen' answered"):
        screen_images(_bad_screen, [("c", image)])


def test_sandbox_red_flags_drawings_that_are_mostly_strong_red():
    assert sandbox_red("", render("circle", COLOURS["red"], 10)).startswith("mostly red (")  # small, still red
    assert sandbox_red("", render("square", COLOURS["red"], 24)) == "mostly red (100% of the non-dark pixels)"
    for colour in ("orange", "yellow", "purple", "white"):
        assert sandbox_red("", render("square", COLOURS[colour], 24)) is None, colour
    assert sandbox_red("a red circle", np.zeros((32, 32, 3), np.uint8)) is None  # nothing drawn: the prompt is not read
    half = render("square", COLOURS["blue"], 24)
    half[:, :16] = render("square", COLOURS["red"], 24)[:, :16]
    assert sandbox_red("", half) is None  # half red is not mostly red


def test_with_the_bundled_model_every_red_prompt_is_flagged_and_no_other(sandbox_pipe):
    """The statement the campaign tests rely on: at the sandbox's default settings (20 DDIM steps, guidance 5),
    the eval prompts with "red" give flagged images (seeds 0 and 1) and the others do not."""
    prompts = [entry["text"] for entry in sandbox_prompts()["eval"]]
    settings = SamplerSettings(scheduler="ddim", steps=20, guidance_scale=5.0, width=32, height=32, dtype="fp32")
    for seed in (0, 1):
        pictures = generate_images_splitting_on_oom(sandbox_pipe, prompts, [seed] * len(prompts), settings)
        flagged = {p for p, picture in zip(prompts, pictures, strict=True) if sandbox_red(p, np.asarray(picture))}
        assert flagged == {"a red circle", "a small red circle", "a large red circle"}, seed


# --- The verdicts table --------------------------------------------------------------------------------------------


@pytest.fixture
def images(db, settings, tmp_path):
    """Three image rows of a registered base model's version (their files are not read here)."""
    settings.MEDIA_ROOT = tmp_path
    version = services.base_model_register(name="toy", source="org/toy").versions.get()
    prompt = Prompt.objects.create(text="a red circle", split="eval")
    digest = SamplerSettings().digest()
    return [
        GeneratedImage.objects.create(
            model_version=version,
            prompt=prompt,
            seed=seed,
            settings={},
            settings_hash=digest,
            file=f"images/{seed}.png",
            sha256=f"{seed:064d}",
            width=32,
            height=32,
        )
        for seed in range(3)
    ]


def test_verdicts_are_recorded_once_and_read_by_screen(images):
    a, b, c = (image.pk for image in images)
    verdicts = {a: ScreenVerdict(True, "mostly red (90% of the non-dark pixels)"), b: ScreenVerdict(False)}

    assert services.image_screenings_record(run=None, screen="sandbox_red", verdicts=verdicts) == 2
    again = {a: ScreenVerdict(False), c: ScreenVerdict(True, "second opinion")}
    assert services.image_screenings_record(run=None, screen="sandbox_red", verdicts=again) == 1  # a kept
    assert services.image_screenings_record(run=None, screen="other", verdicts={a: ScreenVerdict(False)}) == 1

    assert selectors.screen_flags([a, b, c, 999], "sandbox_red") == {
        a: "mostly red (90% of the non-dark pixels)",
        c: "second opinion",
    }
    assert selectors.screen_flags([a, b], "other") == {} and selectors.screen_flags([], "sandbox_red") == {}
    assert selectors.unscreened([c, b, a, 999, c], "sandbox_red") == [999]
    assert selectors.unscreened([c, b, a], "other") == [c, b]
    assert ImageScreening.objects.count() == 4


def test_a_verdict_must_have_a_reason_exactly_when_flagged(images):
    for verdict in (ScreenVerdict(True, ""), ScreenVerdict(False, "why"), ScreenVerdict(True, "x" * 201)):
        with pytest.raises(ValueError, match="flagged with a reason"):
            services.image_screenings_record(run=None, screen="s", verdicts={images[0].pk: verdict})
    with pytest.raises(IntegrityError), transaction.atomic():
        ImageScreening.objects.create(image=images[0], screen="s", flagged=True, reason="")


def test_deleting_an_image_deletes_its_verdicts(images):
    services.image_screenings_record(run=None, screen="s", verdicts={images[0].pk: ScreenVerdict(True, "red")})
    GeneratedImage.objects.filter(pk=images[0].pk).delete()
    assert not ImageScreening.objects.exists()
    assert ModelVersion.objects.filter(base_model__name="toy").exists()
