from django.apps import AppConfig


class FinetuneConfig(AppConfig):
    name = "finetune"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core import run_kinds
        from finetune.run_configs import FinetuneConfigSerializer, PreferenceTuneConfigSerializer

        run_kinds.register(
            run_kinds.RunKind(
                name="finetune",
                queue="gpu",
                config_serializer=FinetuneConfigSerializer,
                executor_path="finetune.executors.finetune",
                description="DDPO with LoRA on a model version against a reward model or oracle: a new version.",
            )
        )
        run_kinds.register(
            run_kinds.RunKind(
                name="preference_tune",
                queue="gpu",
                config_serializer=PreferenceTuneConfigSerializer,
                executor_path="finetune.preference_executor.preference_tune",
                description="Diffusion-DPO or Diffusion-KTO with LoRA on a model version, straight from a dataset "
                "of votes (or campaigns): a new version.",
            )
        )
