"""The plug-in registry: code that user input may name, by registered name only.

A run config is user input, so it never names code (a dotted path would let an API caller import and call any
function on a worker). It names a plug-in, and workers resolve only names registered here. Entries come from,
later ones overriding earlier ones:

1. built-ins, registered with :func:`register` by the module that owns them; the modules listed in the
   ``PLUGIN_REGISTRATIONS`` setting are imported at start-up and their ``register()`` is called (the sandbox is
   one: ``generators/sandbox/registration.py``);
2. Python entry points an operator installs, in the kind's group (e.g. ``imagerlhf.oracles``);
3. the ``PLUGINS`` setting, ``{"oracle": {"my-reward": "my_package.rewards:score"}}``.

An entry stores a target ``"package.module:attribute"``; nothing is imported until :func:`resolve` (on a
worker), so web processes import no torch. No Django imports: ``core.apps`` plugs the settings in.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import import_module, metadata
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginKind:
    name: str
    entry_point_group: str
    description: str
    must_be_callable: bool = True


KINDS: dict[str, PluginKind] = {
    kind.name: kind
    for kind in (
        PluginKind(
            "oracle",
            "imagerlhf.oracles",
            "a reward (prompt, image) -> float (image: HxWx3 uint8 array) that fine-tuning runs optimise or measure",
        ),
        PluginKind(
            "pair_oracle",
            "imagerlhf.pair_oracles",
            "a judge (prompt, image_left, image_right) -> left | right | tie | both_bad for simulated annotators",
        ),
        PluginKind(
            "reward_backbone",
            "imagerlhf.reward_backbones",
            "a CLIP checkpoint (local folder or hub id, str or Path) that reward runs name",
            must_be_callable=False,
        ),
        PluginKind(
            "safety_screen",
            "imagerlhf.safety_screens",
            "a check (prompt, image) -> None | reason: str (image: HxWx3 uint8 array); a reason withholds the image "
            "from annotators",
        ),
    )
}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class PluginError(ValueError):
    """A plug-in that is not registered, badly registered or cannot be loaded (the message says which)."""


@dataclass(frozen=True)
class Plugin:
    kind: str
    name: str
    target: str  # "package.module:attribute"
    origin: str  # "built-in", "entry point", "settings"

    def load(self) -> Any:
        """Import the target (only ever a registered one)."""
        module_name, _, attributes = self.target.partition(":")
        try:
            value: Any = import_module(module_name)
            for attribute in attributes.split("."):
                value = getattr(value, attribute)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"The {self.kind} {self.name!r} ({self.target}) cannot be loaded: {exc}") from exc
        if KINDS[self.kind].must_be_callable and not callable(value):
            raise PluginError(f"The {self.kind} {self.name!r} ({self.target}) is not callable.")
        return value


_BUILTINS: dict[str, dict[str, Plugin]] = {kind: {} for kind in KINDS}
_settings_source: Callable[[], Mapping[str, Mapping[str, str]]] = dict


def _plugin(kind: str, name: str, target: str, origin: str) -> Plugin:
    if kind not in KINDS:
        raise PluginError(f"Unknown plug-in kind {kind!r} ({origin}); kinds: {', '.join(KINDS)}.")
    if not isinstance(name, str) or not NAME.match(name):
        raise PluginError(f"The {kind} name {name!r} ({origin}) must be letters, digits, '-' or '_'.")
    if not isinstance(target, str) or not TARGET.match(target):
        raise PluginError(f"The {kind} {name!r} ({origin}) must name 'package.module:attribute', not {target!r}.")
    return Plugin(kind, name, target, origin)


def register(kind: str, name: str, target: str) -> None:
    """Register a built-in (called by the module that owns it)."""
    _BUILTINS[kind][name] = _plugin(kind, name, target, "built-in")


def unregister(kind: str, name: str) -> None:
    _BUILTINS[kind].pop(name, None)


def use_settings(source: Callable[[], Mapping[str, Mapping[str, str]]]) -> None:
    """Read operator entries from ``source()`` at each look-up (``core.apps`` passes the ``PLUGINS`` setting)."""
    global _settings_source
    _settings_source = source


def load_registrations(modules: Iterable[str]) -> None:
    """Import each module and call its ``register()`` (the ``PLUGIN_REGISTRATIONS`` setting)."""
    for module_name in modules:
        import_module(module_name).register()


def settings_entries(configured: Mapping[str, Mapping[str, str]] | None = None) -> list[Plugin]:
    """The operator's entries from the ``PLUGINS`` setting, checked (raises :class:`PluginError`)."""
    configured = _settings_source() if configured is None else configured
    if not isinstance(configured, Mapping):
        raise PluginError("The PLUGINS setting must map a kind to {name: 'package.module:attribute'}.")
    plugins = []
    for kind, entries in configured.items():
        if not isinstance(entries, Mapping):
            raise PluginError(f"PLUGINS[{kind!r}] must map names to 'package.module:attribute'.")
        plugins += [_plugin(kind, name, target, "settings") for name, target in entries.items()]
    return plugins


@functools.cache
def _entry_points(kind: str) -> tuple[Plugin, ...]:
    """The installed entry points of ``kind``; one that is malformed is logged and skipped, so another package's
    mistake cannot disable the built-ins."""
    plugins = []
    for point in metadata.entry_points(group=KINDS[kind].entry_point_group):
        try:
            plugins.append(_plugin(kind, point.name, point.value, f"entry point {point.value}"))
        except PluginError as exc:
            log.warning("Skipping the %s entry point %r: %s", kind, point.name, exc)
    return tuple(plugins)


def refresh_entry_points() -> None:
    """Forget the entry points read so far (after installing a package into a running process, or in tests)."""
    _entry_points.cache_clear()


def entries(kind: str) -> dict[str, Plugin]:
    """Every registered plug-in of ``kind`` by name: built-ins, then entry points, then settings."""
    if kind not in KINDS:
        raise PluginError(f"Unknown plug-in kind {kind!r}; kinds: {', '.join(KINDS)}.")
    merged = dict(_BUILTINS[kind])
    merged.update((plugin.name, plugin) for plugin in _entry_points(kind))
    merged.update((plugin.name, plugin) for plugin in settings_entries() if plugin.kind == kind)
    return merged


def names(kind: str) -> list[str]:
    """The registered names of ``kind``, sorted (what an API may accept)."""
    return sorted(entries(kind))


def get(kind: str, name: str) -> Plugin:
    """The registered plug-in, or :class:`PluginError` listing the registered names."""
    registered = entries(kind)
    if name not in registered:
        known = ", ".join(sorted(registered)) or "none"
        raise PluginError(f"Unknown {kind} {name!r}. Registered: {known}.")
    return registered[name]


def resolve(kind: str, name: str) -> Any:
    """The object behind a registered name, imported now (workers only); never imports an unregistered path."""
    return get(kind, name).load()
