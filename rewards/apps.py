from django.apps import AppConfig


class RewardsConfig(AppConfig):
    name = "rewards"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core import run_kinds
        from rewards import receivers  # noqa: F401 - connects the signal receivers
        from rewards.dataset_import import DatasetImportConfigSerializer
        from rewards.run_configs import (
            EvaluateConfigSerializer,
            RewardTrainConfigSerializer,
            SelectionRefitConfigSerializer,
        )

        run_kinds.register(
            run_kinds.RunKind(
                name="reward_train",
                queue="gpu",
                config_serializer=RewardTrainConfigSerializer,
                executor_path="rewards.executors.reward_train",
                description="Train a CLIP reward model (PickScore loss) on a dataset or campaigns' votes.",
            )
        )
        run_kinds.register(
            run_kinds.RunKind(
                name="evaluate",
                queue="gpu",
                config_serializer=EvaluateConfigSerializer,
                executor_path="rewards.executors.evaluate",
                description="Score versions' images of a prompt set with a reward model (generates missing ones).",
            )
        )
        run_kinds.register(
            run_kinds.RunKind(
                name="dataset_import",
                queue="default",
                config_serializer=DatasetImportConfigSerializer,
                executor_path="rewards.dataset_import.dataset_import",
                description="Validate an uploaded Pick-a-Pic Parquet file row by row and make its dataset ready.",
            )
        )
        run_kinds.register(
            run_kinds.RunKind(
                name="selection_refit",
                queue="gpu",
                config_serializer=SelectionRefitConfigSerializer,
                executor_path="rewards.refit.selection_refit",
                description="Refit a collect campaign's quick reward model: hand-out priorities and a learning curve.",
            )
        )
