"""The sandbox's one registration: its pixel oracles, its pairwise judges, its CLIP and its safety screen, as named
plug-ins.

Listed in the ``PLUGIN_REGISTRATIONS`` setting (the embedded default), so ``core.apps`` calls :func:`register` at
start-up; product code names none of these. Registering imports nothing heavy: targets are imported on use.
The sandbox's model and prompt sets are database rows: ``manage.py sandbox_setup`` creates them, and the
``DEFAULT_*_PROMPT_SET`` settings name its prompt sets by default.
"""

from __future__ import annotations

from core import plugins

ORACLES = {
    "area": "generators.sandbox.oracles:area_reward",
    "colour": "generators.sandbox.oracles:colour_reward",
    "shape": "generators.sandbox.oracles:shape_reward",
    "centred": "generators.sandbox.oracles:centred_reward",
    "even": "generators.sandbox.oracles:even_reward",
    "crisp": "generators.sandbox.oracles:crisp_reward",
    "balanced": "generators.sandbox.oracles:balanced_reward",
    "high": "generators.sandbox.oracles:high_reward",
}
PAIR_ORACLES = {
    "larger": "generators.sandbox.pair_oracles:larger",
    "colour": "generators.sandbox.pair_oracles:colour",
    "shape": "generators.sandbox.pair_oracles:shape",
    "centred": "generators.sandbox.pair_oracles:centred",
    "even": "generators.sandbox.pair_oracles:even",
    "crisp": "generators.sandbox.pair_oracles:crisp",
    "balanced": "generators.sandbox.pair_oracles:balanced",
    "high": "generators.sandbox.pair_oracles:high",
}
REWARD_BACKBONES = {"sandbox": "generators.sandbox:CLIP_PATH"}
SAFETY_SCREENS = {"sandbox_red": "generators.sandbox.screens:sandbox_red"}


def register() -> None:
    for kind, entries in (
        ("oracle", ORACLES),
        ("pair_oracle", PAIR_ORACLES),
        ("reward_backbone", REWARD_BACKBONES),
        ("safety_screen", SAFETY_SCREENS),
    ):
        for name, target in entries.items():
            plugins.register(kind, name, target)
