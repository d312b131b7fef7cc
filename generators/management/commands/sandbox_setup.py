"""Register the bundled sandbox model and its prompt sets (idempotent): the platform works out of the box."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from generators import services
from generators.models import BaseModel, PromptSet
from generators.sandbox_catalog import (
    EVAL_SET,
    SANDBOX_BASE_MODEL,
    SANDBOX_DEFAULTS,
    TRAIN_SET,
    sandbox_prompts,
    sandbox_source,
)


class Command(BaseCommand):
    help = "Register the sandbox base model (version 'base', alias 'champion') and the sandbox-train/eval prompt sets."

    def handle(self, *args, **options) -> None:
        base = BaseModel.objects.filter(name=SANDBOX_BASE_MODEL).first()
        if base is None:
            base = services.base_model_register(
                name=SANDBOX_BASE_MODEL,
                source=sandbox_source(),
                pipeline_class="StableDiffusionPipeline",
                default_settings=SANDBOX_DEFAULTS,
                description="Tiny coloured-shapes text-to-image model bundled with the platform (32×32, CPU).",
            )
            services.model_alias_set(name="champion", version=base.versions.get(name=services.BASE_VERSION_NAME))
        elif base.source != sandbox_source():  # the checkout moved: follow the bundled weights
            BaseModel.objects.filter(pk=base.pk).update(source=sandbox_source())
        for name, split in ((TRAIN_SET, "train"), (EVAL_SET, "eval")):
            if not PromptSet.objects.filter(name=name).exists():
                services.prompt_set_create(
                    name=name, split=split, prompts=sandbox_prompts()[split], description=f"Sandbox {split} prompts"
                )
        version = base.versions.get(name=services.BASE_VERSION_NAME)
        sets = {s.name: s.pk for s in PromptSet.objects.filter(name__in=(TRAIN_SET, EVAL_SET))}
        self.stdout.write(
            f"sandbox ready: base model {base.pk}, model version {version.pk}, "
            f"prompt sets {TRAIN_SET}={sets[TRAIN_SET]} {EVAL_SET}={sets[EVAL_SET]}"
        )
