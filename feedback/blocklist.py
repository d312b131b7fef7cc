"""A campaign's prompt blocklist: words or phrases whose prompts annotators never see (no Django).

A term matches a prompt when it occurs as whole words, case-insensitively, with any run of whitespace between its
words ("red  car" matches "A RED car", "car" does not match "carpet"). Prompts that match are left out of the
campaign: their images are neither generated for it nor paired.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

MAX_TERMS = 200
TERM_MAX_LENGTH = 100


class BlocklistError(ValueError):
    """A blocklist that cannot be used (the message says what to fix)."""


def normalise_terms(terms: Iterable[object]) -> list[str]:
    """The terms stripped, whitespace collapsed, lower-cased and deduplicated in order; a BlocklistError for a term
    that is not text, is empty or longer than :data:`TERM_MAX_LENGTH`, or for more than :data:`MAX_TERMS`."""
    cleaned: list[str] = []
    for index, term in enumerate(terms):
        if not isinstance(term, str):
            raise BlocklistError(f"Term {index + 1} is not text.")
        term = " ".join(term.split()).lower()
        if not term:
            raise BlocklistError(f"Term {index + 1} is empty.")
        if len(term) > TERM_MAX_LENGTH:
            raise BlocklistError(f"Term {index + 1} is longer than {TERM_MAX_LENGTH} characters.")
        if term not in cleaned:
            cleaned.append(term)
    if len(cleaned) > MAX_TERMS:
        raise BlocklistError(f"At most {MAX_TERMS} terms.")
    return cleaned


def _pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    alternatives = (r"\s+".join(re.escape(word) for word in term.split()) for term in terms)
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def blocked_term(text: str, terms: Sequence[str]) -> str | None:
    """The first term of ``terms`` that ``text`` contains (as :func:`normalise_terms` keeps it), or None."""
    pattern = _pattern(terms)
    found = pattern.search(text) if pattern else None
    return " ".join(found.group(0).split()).lower() if found else None


def blocked_prompts(prompts: Iterable[tuple[int, str]], terms: Sequence[str]) -> dict[int, str]:
    """Prompt id → the term it matched, for the ``(id, text)`` prompts that match one of ``terms``."""
    pattern = _pattern(terms)
    if pattern is None:
        return {}
    blocked = {}
    for prompt_id, text in prompts:
        found = pattern.search(text)
        if found:
            blocked[prompt_id] = " ".join(found.group(0).split()).lower()
    return blocked
