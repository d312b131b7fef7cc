"""Safety screens ``(prompt, image) -> None | reason``: registered plug-ins only (no Django, no torch here).

A screen checks a generated image before annotators see it: None lets the image through, a short reason (at most
:data:`MAX_REASON` characters) withholds it. A run config is user input, so a screen is a name registered in
:mod:`core.plugins` (kind ``safety_screen``: built-ins such as the sandbox's ``sandbox_red`` and generators'
``sd_safety_checker``, an operator's entry points (group ``imagerlhf.safety_screens``) or ``PLUGINS`` setting),
never a dotted path. :func:`check_screen_name` imports nothing (web processes); :func:`resolve_screen` imports the
screen (workers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from core import plugins

KIND = "safety_screen"
MAX_REASON = 200  # characters; generators.ImageScreening.reason holds this many

Screen = Callable[[str, Any], "str | None"]  # (prompt, HxWx3 uint8 array) -> None | reason


class ScreenError(ValueError):
    """A screen name that is not registered, a target that cannot be loaded, or a screen's answer that is neither
    None nor a reason (the message names the screen)."""


@dataclass(frozen=True)
class ScreenVerdict:
    """One image's verdict: ``flagged`` with the screen's ``reason``, or not flagged with an empty reason."""

    flagged: bool
    reason: str = ""


def screen_names() -> list[str]:
    """The registered screen names (what a run config may name)."""
    return plugins.names(KIND)


def check_screen_name(name: str) -> str:
    """``name`` if it is a registered screen; imports nothing (safe in a web process). The error lists the
    registered names."""
    try:
        plugins.get(KIND, name)
    except plugins.PluginError as exc:
        raise ScreenError(str(exc)) from exc
    return name


def resolve_screen(name: str) -> Screen:
    """The registered function ``(prompt, image) -> None | reason`` called ``name`` (imported now: workers only)."""
    try:
        return plugins.resolve(KIND, name)
    except plugins.PluginError as exc:
        raise ScreenError(str(exc)) from exc


def verdict_of(answer: object, *, name: str, prompt: str) -> ScreenVerdict:
    """A screen's answer as a verdict; anything but None or a non-blank str of at most :data:`MAX_REASON`
    characters is a :class:`ScreenError` naming the screen."""
    if answer is None:
        return ScreenVerdict(flagged=False)
    if isinstance(answer, str) and answer.strip() and len(answer) <= MAX_REASON:
        return ScreenVerdict(flagged=True, reason=answer)
    shown = repr(answer)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise ScreenError(
        f"The safety screen {name!r} answered {shown} for an image of {prompt[:80]!r}: a screen answers None or a "
        f"reason (a non-blank string of at most {MAX_REASON} characters)."
    )


def screen_images(screen: Screen, items: Iterable[tuple[str, Any]], *, name: str | None = None) -> list[ScreenVerdict]:
    """The verdict of ``screen`` on each ``(prompt, image)`` of ``items`` (images HxWx3 uint8 arrays), in order.
    ``name``: how errors name the screen (default: the function's name)."""
    label = name or getattr(screen, "__name__", repr(screen))
    return [verdict_of(screen(prompt, image), name=label, prompt=prompt) for prompt, image in items]
