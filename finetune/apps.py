from django.apps import AppConfig


class FinetuneConfig(AppConfig):
    name = "finetune"
    default_auto_field = "django.db.models.BigAutoField"
