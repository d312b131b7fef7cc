"""The hand-out policy: which pair an annotator rates next. The whole policy lives here.

For an annotator in an open campaign they may annotate:

1. A live lease they already hold is returned again (reloading the page does not burn a pair); the
   page may hold a second one, the pair after the one on screen, so its images are preloaded.
2. Otherwise a pair is leased that
   - they have never been assigned (an annotator sees a pair at most once),
   - still needs votes: ``valid_votes + live leases of others < k`` (so the campaign never overshoots k),
   - is not being handed to someone else at this instant: rows are locked with
     ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent annotators take different pairs
     instead of queueing on the same row; SQLite serialises write transactions, which is correct but slower.
     Once a candidate's row lock is held its votes and leases are counted again by the INSERT that
     leases it (a new statement), because the candidate query's snapshot can predate a lease another
     annotator committed since; a candidate without room is skipped.
   Among those, pairs closest to completion go first (finish pairs rather than spread votes thinly),
   then, among pairs without votes, the oldest (``random`` campaigns: creation order, no model) or the
   highest ``Pair.priority`` (``uncertainty`` campaigns: the refit job writes priorities every
   ``refit_every`` votes, higher where its reward model is least sure; see ``rewards.refit``). Pairs already
   started still go first in uncertainty campaigns: a started pair was itself chosen for its priority, and a
   campaign that keeps opening new pairs while others wait for their last votes holds more leases and pairs
   that never reach k. The search looks at the first ``IN_PROGRESS_WINDOW`` pairs that already have votes,
   then at pairs without votes (uncertainty: through the partial index ``pair_fresh_priority``, which holds
   only pairs without votes, so the walk in priority order never steps over started pairs), and only then at
   all pairs: an annotator who has rated the top of the
   in-progress pairs gets a fresh pair instead of one deeper down, which keeps each request's work
   bounded (a lone annotator's rated pairs stay in progress until others complete them).
   With probability ``gold_rate`` a gold pair the annotator has not seen is offered
   instead (gold pairs have no k: everybody may get them).
3. Leases expire after ``campaign.lease_seconds``; an expired lease no longer counts, so its pair
   returns to the pool (for other annotators).
4. Which image is shown on the left is drawn at random per assignment and recorded (``a_on_left``).
5. A withdrawn pair (an image of it reported or screened out: ``feedback/safety.py``) is never leased, nor
   returned as a held lease.
6. Each assignment gets a random ``image_token``: the rater fetches the images by token and side, never by
   image id (ids grow with generation order and would tell an arena's versions apart).

"Nothing left" (None, the API's 204) means nothing for this annotator *now*: a pair that another
annotator is leasing at this instant, or one whose votes are all leased, can come back when a lease
lapses or ends in a skip. Clients poll again after a while; the campaign is complete when every
regular pair has k valid votes.

This is the annotators' hot path, so it is hand-written SQL that PostgreSQL and SQLite both run (three
statements for a new lease): building the same queries with the ORM cost several times more CPU than
the database spent on them (``bench/votes_load.py``, ``docs/benchmarks.md``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from core import hot_sql
from core.hot_sql import as_aware_datetime, db_datetime, for_update
from feedback.models import Assignment, AssignmentStatus, Campaign, Pair, Selection, new_image_token
from generators.models import GeneratedImage, Prompt

MAX_CANDIDATES = 20
IN_PROGRESS_WINDOW = 64

_A, _P = Assignment._meta.db_table, Pair._meta.db_table
_LEASED = AssignmentStatus.LEASED.value
# A scalar subquery: evaluated only for the row that is returned, not for every row the search passes.
_PROMPT_TEXT = (
    f"(SELECT pr.text FROM {GeneratedImage._meta.db_table} i "  # noqa: S608 - table names come from the models
    f"JOIN {Prompt._meta.db_table} pr ON pr.id = i.prompt_id WHERE i.id = p.image_a_id)"
)
_LIVE_LEASES = (
    f"(SELECT COUNT(*) FROM {_A} l "  # noqa: S608 - table names come from the models, values are parameters
    f"WHERE l.pair_id = p.id AND l.status = '{_LEASED}' AND l.expires_at > %(now)s)"
)
# Not NOT EXISTS: the planner may turn that into an anti-join that reads the annotator's whole history on
# every request; a scalar subquery with LIMIT stays one probe of the (pair, annotator) unique index per row.
_UNSEEN = f"(SELECT 1 FROM {_A} s WHERE s.pair_id = p.id AND s.annotator_id = %(annotator)s LIMIT 1) IS NULL"  # noqa: S608

_HELD_SQL = f"""SELECT a.id, a.a_on_left, a.expires_at, a.image_token, p.id, p.image_a_id, p.image_b_id, {_PROMPT_TEXT}
FROM {_A} a JOIN {_P} p ON p.id = a.pair_id
WHERE a.annotator_id = %s AND p.campaign_id = %s AND a.status = '{_LEASED}' AND a.expires_at > %s AND a.id <> %s
AND NOT p.withdrawn ORDER BY a.id LIMIT 1"""  # noqa: S608 - table names come from the models, values are parameters

_CANDIDATE = f"SELECT p.id, p.image_a_id, p.image_b_id, {_PROMPT_TEXT} FROM {_P} p"  # noqa: S608
_GOLD_CANDIDATE_SQL = f"""{_CANDIDATE}
WHERE p.campaign_id = %(campaign)s AND p.is_gold = %(gold)s AND NOT p.withdrawn AND {_UNSEEN} ORDER BY p.id LIMIT 1"""
# Regular pairs are searched in bands, each an index range scan in the hand-out order (closest to done first):
# the top of the pairs that already have votes, then the pairs without votes, then (rarely) all of them.
# An annotator's own rated pairs stay in progress while others have not completed them (always so for a lone
# annotator), so an unbounded search of the first band would read the annotator's whole history every time.
_REGULAR_BANDS = (
    f"""p.id IN (SELECT w.id FROM {_P} w WHERE w.campaign_id = %(campaign)s AND w.is_gold = %(gold)s
    AND w.valid_votes >= 1 AND w.valid_votes < %(k)s ORDER BY w.valid_votes DESC, w.id LIMIT %(window)s)""",  # noqa: S608
    # "<= 0", not "= 0": with the count pinned to one value the planner may walk the primary key in id order
    # instead, skipping every completed pair first (they cluster at low ids); statistics gathered early in a
    # campaign make that look cheap, and it grew to 1.3 ms per hand-out at 4,400 completed pairs. With a range,
    # only pair_handout_order gives the ORDER BY, whatever the statistics.
    "p.valid_votes <= 0",
    "p.valid_votes < %(k)s",
)
_REGULAR_CANDIDATE_SQL = f"""{_CANDIDATE}
WHERE p.campaign_id = %(campaign)s AND p.is_gold = %(gold)s AND {{band}} AND NOT p.withdrawn AND {_UNSEEN}
AND p.valid_votes + {_LIVE_LEASES} < %(k)s {{not_tried}}
ORDER BY {{order}} LIMIT 1"""  # noqa: S608
_HANDOUT_ORDER = "p.valid_votes DESC, p.id"
# (band, order) per selection. Uncertainty campaigns differ in the fresh band only: "= 0" matches the predicate
# of the partial index pair_fresh_priority (pairs without votes), whose order is the ORDER BY.
_BANDS = {
    Selection.RANDOM.value: tuple((band, _HANDOUT_ORDER) for band in _REGULAR_BANDS),
    Selection.UNCERTAINTY.value: (
        (_REGULAR_BANDS[0], _HANDOUT_ORDER),
        ("p.valid_votes = 0", "p.priority DESC, p.id"),
        (_REGULAR_BANDS[2], _HANDOUT_ORDER),
    ),
}

_INSERT_COLUMNS = f"INSERT INTO {_A} (pair_id, annotator_id, a_on_left, image_token, status, leased_at, expires_at)"
_LEASE_GOLD_SQL = f"""{_INSERT_COLUMNS}
VALUES (%(pair)s, %(annotator)s, %(a_on_left)s, %(image_token)s, '{_LEASED}', %(now)s, %(expires_at)s)
ON CONFLICT DO NOTHING RETURNING id"""
_LEASE_IF_ROOM_SQL = f"""{_INSERT_COLUMNS}
SELECT %(pair)s, %(annotator)s, %(a_on_left)s, %(image_token)s, '{_LEASED}', %(now)s, %(expires_at)s
FROM {_P} p WHERE p.id = %(pair)s AND NOT p.withdrawn AND p.valid_votes + {_LIVE_LEASES} < %(k)s
ON CONFLICT DO NOTHING RETURNING id"""  # noqa: S608


@dataclass(frozen=True)
class Lease:
    """A pair leased to an annotator: what the rating page needs to show it.

    The image ids stay on the server: the rater gets ``image_token`` (see ``feedback.shown_images``).
    """

    assignment: int
    image_token: str
    pair: int
    image_a: int
    image_b: int
    a_on_left: bool
    expires_at: datetime
    prompt: str


def next_assignment(
    *, annotator, campaign: Campaign, after: int | None = None, rng: random.Random | None = None
) -> Lease | None:
    """Lease the next pair for ``annotator`` (see the module docstring), or None when nothing is left.

    ``after`` is the assignment the annotator is looking at now: the page asks for the pair after it
    so that it can preload the next images. An annotator holds at most two live leases per campaign.
    """
    rng = rng or random.SystemRandom()
    now = timezone.now()
    db_now = db_datetime(now)
    with transaction.atomic(), hot_sql.cursor() as cursor:
        cursor.execute(_HELD_SQL, [annotator.pk, campaign.pk, db_now, after or 0])
        held = cursor.fetchone()
        if held is not None:
            assignment, a_on_left, expires_at, image_token, *pair = held
            return Lease(assignment, image_token, *pair[:3], bool(a_on_left), as_aware_datetime(expires_at), pair[3])
        expires_at = now + timedelta(seconds=campaign.lease_seconds)
        a_on_left = rng.random() < 0.5
        image_token = new_image_token()
        params = {
            "campaign": campaign.pk,
            "annotator": annotator.pk,
            "k": campaign.votes_per_pair,
            "now": db_now,
            "expires_at": db_datetime(expires_at),
            "a_on_left": a_on_left,
            "image_token": image_token,
            "window": IN_PROGRESS_WINDOW,
        }
        if campaign.gold_rate and rng.random() < campaign.gold_rate:
            cursor.execute(for_update(_GOLD_CANDIDATE_SQL, skip_locked=True), {**params, "gold": True})
            gold = cursor.fetchone()
            if gold is not None:
                cursor.execute(_LEASE_GOLD_SQL, {**params, "pair": gold[0]})
                row = cursor.fetchone()
                if row is not None:
                    return Lease(row[0], image_token, *gold[:3], a_on_left, expires_at, gold[3])
        leased = _lease_regular(cursor, params, _BANDS.get(campaign.selection, _BANDS[Selection.RANDOM.value]))
    if leased is None:
        return None
    assignment, (pair, image_a, image_b, prompt) = leased
    return Lease(assignment, image_token, pair, image_a, image_b, a_on_left, expires_at, prompt)


def _lease_regular(cursor, params: dict, bands: tuple[tuple[str, str], ...]) -> tuple[int, tuple] | None:
    """Lock and lease the first regular pair with room, band by band (``_BANDS``: where, and in which order).

    Returns the new assignment's id and the pair's row (id, image_a, image_b, prompt), or None.
    """
    tried: list[int] = []
    for band, order in bands:
        while len(tried) < MAX_CANDIDATES:
            not_tried = f"AND p.id NOT IN ({', '.join(map(str, tried))})" if tried else ""
            sql = _REGULAR_CANDIDATE_SQL.format(band=band, order=order, not_tried=not_tried)
            cursor.execute(for_update(sql, skip_locked=True), {**params, "gold": False})
            candidate = cursor.fetchone()
            if candidate is None:
                break
            cursor.execute(_LEASE_IF_ROOM_SQL, {**params, "pair": candidate[0]})
            row = cursor.fetchone()
            if row is not None:
                return row[0], candidate
            tried.append(candidate[0])  # another annotator's lease took its last vote (or this annotator has it)
    return None
