"""Named starting points for run configs ("quick sandbox", "SD 1.5 LoRA"), shown as buttons on the run form.

A preset is a partial config of one run kind: the form fills these fields and sends them like values the user
typed (it changes nothing the server validates). Its ``config`` may be a callable, resolved per request, so that
a preset can name rows by what they are called here (the champion version, the default prompt sets): a key
whose value resolves to ``None`` (no such row here) is left out and the user chooses.

Presets are registered by whoever knows the kind's settings (see ``frontend/run_forms.py``); nothing here
imports an app.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Preset:
    kind: str
    name: str
    description: str
    config: Mapping[str, Any] | Callable[[], Mapping[str, Any]]

    def resolved(self) -> dict[str, Any]:
        config = self.config() if callable(self.config) else self.config
        return {key: value for key, value in config.items() if value is not None}


_PRESETS: dict[tuple[str, str], Preset] = {}


def register(preset: Preset) -> None:
    _PRESETS[(preset.kind, preset.name)] = preset


def presets_for(kind: str) -> list[dict[str, Any]]:
    """The kind's presets as ``{"name", "description", "config"}``, in registration order."""
    return [
        {"name": preset.name, "description": preset.description, "config": preset.resolved()}
        for (preset_kind, _), preset in _PRESETS.items()
        if preset_kind == kind
    ]
