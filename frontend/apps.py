from django.apps import AppConfig


class FrontendConfig(AppConfig):
    name = "frontend"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from frontend import run_forms

        run_forms.register()  # what the run forms need beyond the kinds' serializers (core.form_schema)
