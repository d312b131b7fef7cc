"""Named pixel-oracle rewards and plug-in reward functions (no Django).

A fine-tuning run may optimise a sandbox oracle (``area``, ``colour``, ``shape``) or any function
``(prompt, image) -> float`` given by its dotted path (``package.module.function`` or ``package.module:function``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import import_module
from typing import Any

SANDBOX_ORACLES = {
    "area": "generators.sandbox.oracles.area_reward",
    "colour": "generators.sandbox.oracles.colour_reward",
    "shape": "generators.sandbox.oracles.shape_reward",
}
DOTTED_PATH = re.compile(r"^[A-Za-z_][\w.]*[.:][A-Za-z_]\w*$")


class OracleError(ValueError):
    """An oracle name that is neither a sandbox oracle nor an importable function."""


def check_oracle_name(name: str) -> str:
    """Validate the form of an oracle name without importing anything (safe in a web process)."""
    if name in SANDBOX_ORACLES or DOTTED_PATH.match(name):
        return name
    raise OracleError(
        f"{name!r} is not a sandbox oracle ({', '.join(SANDBOX_ORACLES)}) nor a dotted path such as 'pkg.mod.fn'."
    )


def resolve_oracle(name: str) -> Callable[[str, Any], float]:
    """The function ``(prompt, image) -> float`` behind ``name``."""
    path = SANDBOX_ORACLES.get(check_oracle_name(name), name)
    module_name, _, attribute = path.replace(":", ".").rpartition(".")
    try:
        function = getattr(import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise OracleError(f"Oracle {name!r} cannot be imported: {exc}") from exc
    if not callable(function):
        raise OracleError(f"Oracle {name!r} is not a function.")
    return function
