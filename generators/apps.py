from django.apps import AppConfig


class GeneratorsConfig(AppConfig):
    name = "generators"
    default_auto_field = "django.db.models.BigAutoField"
