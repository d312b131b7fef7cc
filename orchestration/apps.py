from django.apps import AppConfig


class OrchestrationConfig(AppConfig):
    """No models: installed only so that ``manage.py rlhf_cycle`` is found."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "orchestration"
