"""The generators app's own built-in plug-ins, registered by ``GeneratorsConfig.ready`` (whatever
``PLUGIN_REGISTRATIONS`` lists, so an operator who drops the sandbox keeps them). Imports nothing heavy: targets
are imported when a worker resolves them.
"""

from __future__ import annotations

from core import plugins

SAFETY_SCREENS = {"sd_safety_checker": "generators.sd_safety_checker:sd_safety_checker"}


def register() -> None:
    for name, target in SAFETY_SCREENS.items():
        plugins.register("safety_screen", name, target)
