from django.apps import AppConfig


class FinetuneConfig(AppConfig):
    name = "finetune"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core import run_kinds
        from finetune.run_configs import FinetuneConfigSerializer

        run_kinds.register(
            run_kinds.RunKind(
                name="finetune",
                queue="gpu",
                config_serializer=FinetuneConfigSerializer,
                executor_path="finetune.executors.finetune",
                description="DDPO with LoRA on a model version against a reward model or oracle: a new version.",
            )
        )
