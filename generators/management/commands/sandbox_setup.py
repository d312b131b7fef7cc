"""Register the bundled sandbox model and its prompt sets (idempotent): the platform works out of the box."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from generators import services
from generators.models import BaseModel, PromptSet
from generators.sandbox_catalog import EVAL_SET, SANDBOXES, TRAIN_SET, SandboxModel, sandbox_prompts


class Command(BaseCommand):
    help = (
        "Register the sandbox base models (sandbox: a DDIM UNet, version 'base' with the alias 'champion'; "
        "sandbox-flow: an SD3 flow transformer) and the sandbox-train/eval prompt sets."
    )

    def handle(self, *args, **options) -> None:
        bases = [_register(sandbox, champion=kind == "ddim") for kind, sandbox in SANDBOXES.items()]
        for name, split in ((TRAIN_SET, "train"), (EVAL_SET, "eval")):
            if not PromptSet.objects.filter(name=name).exists():
                services.prompt_set_create(
                    name=name, split=split, prompts=sandbox_prompts()[split], description=f"Sandbox {split} prompts"
                )
        sets = {s.name: s.pk for s in PromptSet.objects.filter(name__in=(TRAIN_SET, EVAL_SET))}
        models = ", ".join(
            f"{base.name} (base model {base.pk}, model version {base.versions.get(name=services.BASE_VERSION_NAME).pk})"
            for base in bases
        )
        prompt_sets = f"{TRAIN_SET}={sets[TRAIN_SET]} {EVAL_SET}={sets[EVAL_SET]}"
        self.stdout.write(f"sandbox ready: {models}; prompt sets {prompt_sets}")


def _register(sandbox: SandboxModel, *, champion: bool) -> BaseModel:
    """The sandbox's base model, registered once (and its alias ``champion`` when asked); a checkout that moved
    makes its source follow the bundled weights."""
    base = BaseModel.objects.filter(name=sandbox.base_model).first()
    if base is None:
        base = services.base_model_register(
            name=sandbox.base_model,
            source=str(sandbox.path),
            pipeline_class=sandbox.pipeline_class,
            default_settings=sandbox.defaults,
            description=sandbox.description,
        )
        if champion:
            services.model_alias_set(name="champion", version=base.versions.get(name=services.BASE_VERSION_NAME))
    elif base.source != str(sandbox.path):
        BaseModel.objects.filter(pk=base.pk).update(source=str(sandbox.path))
    return base
