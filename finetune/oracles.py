"""Oracle rewards ``(prompt, image) -> float`` that fine-tuning runs name: registered plug-ins only (no Django).

A run config is user input, so an oracle is a name registered in :mod:`core.plugins` (kind ``oracle``: built-ins
such as the sandbox's ``area``, ``colour``, ``shape``, an operator's entry points or ``PLUGINS`` setting), never a
dotted path: nothing that is not registered is ever imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core import plugins

KIND = "oracle"


class OracleError(ValueError):
    """An oracle name that is not registered, or whose registered target cannot be loaded."""


def oracle_names() -> list[str]:
    """The registered oracle names (what a run config may name)."""
    return plugins.names(KIND)


def check_oracle_name(name: str) -> str:
    """``name`` if it is a registered oracle; imports nothing (safe in a web process)."""
    try:
        plugins.get(KIND, name)
    except plugins.PluginError as exc:
        raise OracleError(str(exc)) from exc
    return name


def resolve_oracle(name: str) -> Callable[[str, Any], float]:
    """The registered function ``(prompt, image) -> float`` called ``name`` (imported now: workers only)."""
    try:
        return plugins.resolve(KIND, name)
    except plugins.PluginError as exc:
        raise OracleError(str(exc)) from exc
