"""A campaign's questions (criteria) and a rater's answers to them (plain Python, no Django).

A campaign asks 1–4 named questions about each pair, e.g. "matches the prompt", "looks better", "plausible, no
artefacts" (as RichHF-18K and MPS do). Each question has a ``key`` (a slug stored with every vote: the vote's
*criterion*) and the ``text`` raters read. Without questions a campaign asks the one default question, which is
what every campaign asked before criteria existed, so old votes, files and clients keep their meaning.

How votes store criteria, and why (``feedback.services.vote_submit_answers``):

- One submission answers every question of a pair at once and is stored as one ``Vote`` row per criterion
  (``criterion`` column; unique per assignment and criterion, and per annotator, pair and criterion), all written by
  one hand-written INSERT in the vote's transaction. A row per criterion keeps every reader simple and fast: quality,
  agreement, the leaderboard, exports and datasets filter one criterion and see exactly what a one-question
  campaign's votes look like; a one-question campaign writes one row, as before.
- The hand-out and ``Pair.valid_votes`` know nothing of criteria: a submission counts once toward k whatever the
  number of questions, so "exactly k valid votes per pair" means k raters answered every question, and the hot path
  (the hand-out's SQL, the vote's lock, its single statement on PostgreSQL) is unchanged but for one more column
  read (the campaign's questions) and one value list per question in the INSERT.
- A skip skips the pair for every question (a ``skip`` row per criterion, not counted); a question cannot be
  skipped alone, so each criterion of a pair gets the same raters.
- Resubmitting the same answers returns the stored votes (idempotent retries); different answers are a conflict,
  as for one question. Answers that miss, add or skip a question are a 400 naming ``answers``.
- Readers that need one preference (quality and agreement, gold accuracy, the arena leaderboard, the reward-hacking
  audit) read the campaign's first question unless told another (``?criterion=``); a dataset or a reward model is
  per criterion (``PreferenceDataset.criterion``), and a fine-tune may mix reward models (``finetune`` run's
  ``reward_models``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_CRITERION = "overall"
DEFAULT_QUESTION_TEXT = "Which image is better?"
MAX_QUESTIONS = 4
KEY_MAX_LENGTH = 32
TEXT_MAX_LENGTH = 200
ANSWER_CHOICES = ("left", "right", "tie", "both_bad")
_SLUG = re.compile(r"[a-z0-9]+(?:[_-][a-z0-9]+)*")


class CriteriaError(ValueError):
    """Bad questions or answers; ``field`` names the input to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def default_questions() -> list[dict[str, str]]:
    """The one question every campaign asks unless it names its own (a new list each call)."""
    return [{"key": DEFAULT_CRITERION, "text": DEFAULT_QUESTION_TEXT}]


def check_criterion_key(key: Any, field: str = "criterion") -> str:
    """``key`` if it is a valid criterion slug (lower-case letters and digits joined by ``-`` or ``_``)."""
    if not isinstance(key, str) or not key:
        raise CriteriaError(field, "A criterion key is a non-empty string.")
    if len(key) > KEY_MAX_LENGTH:
        raise CriteriaError(field, f"A criterion key has at most {KEY_MAX_LENGTH} characters.")
    if not _SLUG.fullmatch(key):
        raise CriteriaError(field, f"{key!r} is not a slug: use lower-case letters and digits joined by - or _.")
    return key


def validate_questions(questions: Any) -> list[dict[str, str]]:
    """The questions as a clean ordered list of ``{"key", "text"}``, or :class:`CriteriaError` on ``questions``.

    1–4 questions, each a mapping with exactly ``key`` (a unique slug, at most 32 characters) and ``text``
    (1–200 characters after stripping).
    """
    if not isinstance(questions, Sequence) or isinstance(questions, str | bytes):
        raise CriteriaError("questions", "A list of {key, text} objects.")
    if not 1 <= len(questions) <= MAX_QUESTIONS:
        raise CriteriaError("questions", f"Ask between 1 and {MAX_QUESTIONS} questions, not {len(questions)}.")
    clean: list[dict[str, str]] = []
    for index, question in enumerate(questions):
        where = f"questions[{index}]"
        if not isinstance(question, Mapping):
            raise CriteriaError("questions", f"{where}: an object with key and text.")
        unknown = sorted(set(question) - {"key", "text"})
        if unknown:
            raise CriteriaError("questions", f"{where}: unknown field(s) {', '.join(map(str, unknown))}.")
        try:
            key = check_criterion_key(question.get("key"), "questions")
        except CriteriaError as exc:
            raise CriteriaError("questions", f"{where}.key: {exc}") from None
        text = question.get("text")
        if not isinstance(text, str) or not text.strip():
            raise CriteriaError("questions", f"{where}.text: the question raters read, a non-empty string.")
        if len(text.strip()) > TEXT_MAX_LENGTH:
            raise CriteriaError("questions", f"{where}.text: at most {TEXT_MAX_LENGTH} characters.")
        if any(seen["key"] == key for seen in clean):
            raise CriteriaError("questions", f"{where}.key: {key!r} is asked twice; keys are unique.")
        clean.append({"key": key, "text": text.strip()})
    return clean


def criteria_of(questions: Sequence[Mapping[str, str]] | None) -> list[str]:
    """The criterion keys of a campaign's questions, in order (the default one when there are none)."""
    return [question["key"] for question in questions] if questions else [DEFAULT_CRITERION]


def answers_for(criteria: Sequence[str], *, choice: str | None, answers: Mapping[str, str] | None) -> dict[str, str]:
    """What the rater pressed for each criterion, in the campaign's order (``criterion → left/right/...``).

    One of ``choice`` or ``answers``: ``choice`` alone answers a one-question campaign, and ``"skip"`` skips the
    pair for every question; ``answers`` must answer every question, each with left, right, tie or both_bad.
    """
    if (choice is None) == (answers is None):
        raise CriteriaError("choice", "Send either choice or answers (one per question).")
    if choice is not None:
        if choice == "skip":
            return dict.fromkeys(criteria, "skip")
        if len(criteria) > 1:
            raise CriteriaError(
                "answers", f"This pair has {len(criteria)} questions ({', '.join(criteria)}): answer each in answers."
            )
        return {criteria[0]: choice}
    missing = [key for key in criteria if key not in answers]
    unknown = sorted(set(answers) - set(criteria))
    if unknown:
        raise CriteriaError("answers", f"No question {', '.join(map(repr, unknown))}; this pair asks {criteria}.")
    if missing:
        raise CriteriaError("answers", f"Answer every question: {', '.join(missing)} missing.")
    bad = {key: value for key, value in answers.items() if value not in ANSWER_CHOICES}
    if bad:
        key = next(iter(bad))
        raise CriteriaError("answers", f"{key}: choose one of {', '.join(ANSWER_CHOICES)} (skip skips the whole pair).")
    return {key: answers[key] for key in criteria}
