from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core import run_kinds, signals  # noqa: F401  (signals registers worker hooks)
        from core.cache_table import create_cache_table

        run_kinds.register_builtin_kinds()
        post_migrate.connect(create_cache_table, sender=self, dispatch_uid="core.create_cache_table")
        _register_plugins()


def _register_plugins() -> None:
    """Built-ins from the PLUGIN_REGISTRATIONS modules; the PLUGINS setting checked now, read at each look-up."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from core import plugins

    plugins.use_settings(lambda: settings.PLUGINS)
    try:
        plugins.load_registrations(settings.PLUGIN_REGISTRATIONS)
        plugins.settings_entries()
    except plugins.PluginError as exc:
        raise ImproperlyConfigured(str(exc)) from exc
