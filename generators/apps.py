from django.apps import AppConfig


class GeneratorsConfig(AppConfig):
    name = "generators"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core import run_kinds
        from generators import registration
        from generators.run_configs import GenerateConfigSerializer

        registration.register()

        run_kinds.register(
            run_kinds.RunKind(
                name="generate",
                queue="gpu",
                config_serializer=GenerateConfigSerializer,
                executor_path="generators.executors.generate",
                description=(
                    "N images per prompt of a prompt set for each model version (idempotent), optionally checked by "
                    "a safety screen."
                ),
            )
        )
