from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core import run_kinds, signals  # noqa: F401  (signals registers worker hooks)

        run_kinds.register_builtin_kinds()
