"""The ``generate`` run's ``safety_screen`` and ``exclude_prompts``: validation (400s), real runs on the sandbox
storing verdicts, reruns that judge nothing twice and load no pipeline, cancel and progress while screening."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from core import run_kinds
from core import services as run_services
from core.form_schema import describe_serializer
from core.jobs import JobCancelled, JobFailed
from core.models import Run
from core.run_execution import run_execute
from generators import executors, run_configs, selectors
from generators.models import GeneratedImage, ImageScreening, ModelVersion, PromptSet

pytestmark = pytest.mark.django_db

RED_EVAL_PROMPTS = {"a red circle", "a small red circle", "a large red circle"}


@pytest.fixture
def sandbox(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    call_command("sandbox_setup", stdout=io.StringIO())
    eval_set = PromptSet.objects.get(name="sandbox-eval")
    return {"version": ModelVersion.objects.get(base_model__name="sandbox", name="base"), "eval": eval_set}


def _config(sandbox, **overrides) -> dict:
    """The sandbox's default settings (20 DDIM steps): every red eval prompt's image is flagged by sandbox_red."""
    return {"model_versions": [sandbox["version"].pk], "prompt_set": sandbox["eval"].pk, "batch_size": 16, **overrides}


def _prompt_ids(sandbox, texts) -> list[int]:
    return list(sandbox["eval"].prompts.filter(text__in=texts).values_list("pk", flat=True))


def _run(users, config) -> Run:
    run = run_services.run_create(kind="generate", config=config, created_by=users["engineer"])
    state = run_execute(run_id=run.pk, worker="inline")
    run.refresh_from_db()
    assert state == "succeeded", run.error
    return run


# --- Validation ------------------------------------------------------------------------------------------------------


def test_an_unknown_screen_is_400_listing_the_registered_screens(sandbox, engineer_client):
    response = engineer_client.post(
        "/api/v1/runs/", {"kind": "generate", "config": _config(sandbox, safety_screen="nsfw-magic")}, format="json"
    )

    assert response.status_code == 400
    (message,) = response.json()["config"]["safety_screen"]
    assert "Unknown safety_screen 'nsfw-magic'" in message
    assert "sandbox_red" in message and "sd_safety_checker" in message


def test_the_new_keys_default_to_no_screen_and_no_exclusion(sandbox):
    validated = run_kinds.get("generate").validate_config(_config(sandbox))
    assert validated["safety_screen"] == "" and validated["exclude_prompts"] == []
    named = run_kinds.get("generate").validate_config(_config(sandbox, safety_screen="sandbox_red"))
    assert named["safety_screen"] == "sandbox_red"


@pytest.mark.parametrize(
    ("excluded", "message"),
    [
        ("other-set", "Not prompts of the prompt set 'sandbox-eval'"),
        ("unknown", "Not prompts of the prompt set 'sandbox-eval': [999999]"),
        ("twice", "Each prompt may be listed once."),
        ("all", "This leaves no prompt to generate"),
    ],
)
def test_bad_exclude_prompts_are_400(sandbox, engineer_client, excluded, message):
    ids = {
        "other-set": list(PromptSet.objects.get(name="sandbox-train").prompts.values_list("pk", flat=True)[:2]),
        "unknown": [999999],
        "twice": _prompt_ids(sandbox, ["a red circle"]) * 2,
        "all": list(sandbox["eval"].prompts.values_list("pk", flat=True)),
    }[excluded]
    response = engineer_client.post(
        "/api/v1/runs/", {"kind": "generate", "config": _config(sandbox, exclude_prompts=ids)}, format="json"
    )

    assert response.status_code == 400
    assert message in response.json()["config"]["exclude_prompts"][0]


def test_the_image_limit_counts_only_the_kept_prompts(sandbox, monkeypatch):
    monkeypatch.setattr(run_configs, "MAX_IMAGES_PER_RUN", 30)
    serializer = run_kinds.get("generate").config_serializer
    config = _config(sandbox, images_per_prompt=2)  # 24 prompts x 2 = 48 images
    every_prompt = serializer(data=config)
    assert not every_prompt.is_valid() and "at most 30 per run" in str(every_prompt.errors["images_per_prompt"])
    ten = list(sandbox["eval"].prompts.values_list("pk", flat=True)[:10])  # 14 prompts kept x 2 = 28 images
    assert serializer(data={**config, "exclude_prompts": ten}).is_valid()


def test_the_run_form_offers_the_registered_screens(sandbox, client_for):
    kinds = {k["name"]: k for k in client_for("engineer").get("/api/v1/run-kinds/").json()}
    fields = {spec["name"]: spec for spec in kinds["generate"]["form"]}
    screen = fields["safety_screen"]
    assert screen["type"] == "choice" and not screen["required"] and "default" not in screen
    assert {"sandbox_red", "sd_safety_checker"} <= {c["value"] for c in screen["choices"]}
    assert fields["exclude_prompts"]["type"] == "list" and fields["exclude_prompts"]["default"] == []
    assert [spec["name"] for spec in describe_serializer(run_configs.GenerateConfigSerializer)].count(
        "safety_screen"
    ) == 1


# --- Runs ------------------------------------------------------------------------------------------------------------


def test_a_screened_run_stores_a_verdict_per_image_and_a_rerun_judges_nothing_twice(sandbox, users, monkeypatch):
    left_out = _prompt_ids(sandbox, ["a small red circle", "a green cross"])
    config = _config(sandbox, safety_screen="sandbox_red", exclude_prompts=left_out)

    run = _run(users, config)

    kept = sandbox["eval"].prompts.count() - 2
    assert run.result["images"] == run.result["created"] == kept
    assert run.result["screening"] == {"screen": "sandbox_red", "screened": kept, "flagged": 2}
    assert not GeneratedImage.objects.filter(prompt__pk__in=left_out).exists()  # neither generated nor screened
    verdicts = ImageScreening.objects.filter(screen="sandbox_red").select_related("image__prompt")
    assert verdicts.count() == kept and {v.run_id for v in verdicts} == {run.pk}
    assert {v.image.prompt.text for v in verdicts if v.flagged} == RED_EVAL_PROMPTS - {"a small red circle"}
    flags = selectors.screen_flags(GeneratedImage.objects.values_list("pk", flat=True), "sandbox_red")
    assert len(flags) == 2 and all(reason.startswith("mostly red (") for reason in flags.values())

    def no_loading(spec):
        raise AssertionError("a rerun with every image there must not load the pipeline")

    monkeypatch.setattr(executors.default_cache, "get", no_loading)
    again = _run(users, config)

    assert again.result["created"] == 0 and again.result["already_there"] == kept
    assert again.result["screening"] == {"screen": "sandbox_red", "screened": 0, "flagged": 2}
    assert ImageScreening.objects.count() == kept


def test_a_screen_judges_the_images_an_earlier_unscreened_run_made(sandbox, users, monkeypatch):
    first = _run(users, _config(sandbox, images_per_prompt=2))
    assert "screening" not in first.result and not ImageScreening.objects.exists()

    monkeypatch.setattr(executors.default_cache, "get", lambda spec: pytest.fail("nothing is missing"))
    screened = _run(users, _config(sandbox, images_per_prompt=2, safety_screen="sandbox_red"))

    images = 2 * sandbox["eval"].prompts.count()
    assert screened.result["created"] == 0
    assert screened.result["screening"] == {"screen": "sandbox_red", "screened": images, "flagged": 6}
    flagged = ImageScreening.objects.filter(flagged=True).values_list("image__prompt__text", flat=True)
    assert set(flagged) == RED_EVAL_PROMPTS and len(flagged) == 6  # both seeds of each red prompt
    assert {v.run_id for v in ImageScreening.objects.all()} == {screened.pk}


class _Recorder:
    """A JobContext that records progress and asks the job to stop after ``checks`` cancel checks."""

    run_id, attempt = 0, 1

    def __init__(self, checks: int = 10**6) -> None:
        self.left, self.progress = checks, []

    def should_stop(self) -> bool:
        self.left -= 1
        return self.left < 0

    def log_metrics(self, step, values) -> None: ...

    def report_progress(self, fraction, message="") -> None:
        self.progress.append((round(fraction, 4), message))


def test_screening_checks_cancel_between_batches_and_fills_the_end_of_the_progress_bar(sandbox, users):
    _run(users, _config(sandbox))  # every image there: the run below only screens
    config = run_kinds.get("generate").validate_config(_config(sandbox, safety_screen="sandbox_red", batch_size=5))
    run = Run.objects.create(kind="generate", config=config, created_by=users["engineer"])

    with pytest.raises(JobCancelled, match="stopped after screening 10 of 24 images"):
        executors.generate(run, _Recorder(checks=2))
    assert ImageScreening.objects.count() == 10

    recorder = _Recorder()
    result = executors.generate(run, recorder)

    assert result["screening"] == {"screen": "sandbox_red", "screened": 14, "flagged": 3}
    fractions = [fraction for fraction, _ in recorder.progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions[0] > executors.GENERATION_SHARE
    assert recorder.progress[-1][1] == "screened 14 of 14 images (sandbox_red)"


def screen_answering_a_number(prompt, image):
    return 0.5


def test_a_screen_that_answers_badly_fails_the_run_naming_it(sandbox, users, settings):
    settings.PLUGINS = {"safety_screen": {"numbers": f"{__name__}:screen_answering_a_number"}}
    run = run_services.run_create(
        kind="generate", config=_config(sandbox, safety_screen="numbers"), created_by=users["engineer"]
    )

    assert run_execute(run_id=run.pk, worker="inline") == "failed"

    run.refresh_from_db()
    assert "The safety screen 'numbers' answered 0.5" in run.error
    assert GeneratedImage.objects.count() == sandbox["eval"].prompts.count()  # the images stay
    assert not ImageScreening.objects.exists()


def test_a_screen_unregistered_after_the_run_was_queued_fails_it(sandbox, users):
    config = run_kinds.get("generate").validate_config(_config(sandbox, safety_screen="sandbox_red"))
    run = Run.objects.create(kind="generate", config={**config, "safety_screen": "gone"}, created_by=users["engineer"])
    with pytest.raises(JobFailed, match="Unknown safety_screen 'gone'"):
        executors.generate(run, _Recorder())
