"""Simulated annotators voting on a campaign through the public REST API, judged by a pixel oracle.

Accounts ``<prefix>-1..N`` are created (or reused) in the annotator group, added to the campaign and given
tokens through the ORM; every lease and vote then goes over HTTP to ``--base-url``, exactly as a person's
browser would. The last line printed is a JSON summary.
"""

from __future__ import annotations

import json
import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token

from core import plugins
from core.roles import Role
from feedback.models import Campaign, CampaignStatus
from feedback.simulation import (
    FatalError,
    LoopSettings,
    OracleError,
    Simulation,
    SimulationResult,
    check_server,
    resolve_pair_oracle,
    run_simulation,
)

PREFIX = re.compile(r"^[\w.@+-]{1,100}$")
BASE_URL = re.compile(r"^https?://[^/\s]+")


class Command(BaseCommand):
    help = (
        "Simulated annotators rate a campaign's pairs over the REST API (GET next, fetch images, POST vote), "
        "judging with a pairwise oracle plus optional noise and position bias. Prints a JSON summary last."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", type=int, required=True, help="id of an open campaign")
        parser.add_argument(
            "--oracle",
            default=settings.DEFAULT_PAIR_ORACLE,
            help=f"registered pair oracle ({', '.join(plugins.names('pair_oracle'))}) or dotted path to a function "
            f"(prompt, image_left, image_right) -> left|right|tie|both_bad (default: {settings.DEFAULT_PAIR_ORACLE})",
        )
        parser.add_argument("--noise", type=float, default=0.0, help="probability of swapping left and right")
        parser.add_argument("--position-bias", type=float, default=0.0, help="probability of answering left")
        parser.add_argument("--annotators", type=int, default=5, help="simulated annotators, one thread each")
        parser.add_argument("--rate", type=float, default=0.0, help="votes/s per annotator (0: as fast as possible)")
        parser.add_argument("--max-votes-per-annotator", type=int, default=None)
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="the running platform")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--prefix", default="sim", help="accounts are <prefix>-1..N")
        parser.add_argument(
            "--idle-grace", type=float, default=2.0, help="seconds to keep polling once nothing is left (204)"
        )
        parser.add_argument(
            "--think-seconds", type=float, default=None, help="report simulated think times around this mean"
        )
        parser.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout in seconds")

    def handle(self, *args, **options) -> None:
        simulation = self._simulation(options)
        campaign = _open_campaign(options["campaign"])
        accounts = _annotator_accounts(campaign, options["prefix"], options["annotators"])
        try:
            check_server(simulation.base_url, accounts[0][1], campaign.pk, timeout=simulation.timeout)
        except FatalError as exc:
            raise CommandError(str(exc)) from exc
        result = run_simulation(simulation, accounts)
        self._report(result, campaign, options["oracle"])
        failed = [a for a in result.annotators if a.stop_reason in ("failed", "crashed", "unreachable")]
        if failed and not any(a.votes for a in result.annotators):
            raise CommandError("No vote was cast: " + "; ".join(m for a in failed for m in a.messages[:1]))

    def _simulation(self, options: dict) -> Simulation:
        _validate(options)
        try:
            oracle = resolve_pair_oracle(options["oracle"])
        except OracleError as exc:
            raise CommandError(str(exc)) from exc
        return Simulation(
            base_url=options["base_url"],
            campaign=options["campaign"],
            oracle=oracle,
            noise=options["noise"],
            position_bias=options["position_bias"],
            seed=options["seed"],
            think_seconds=options["think_seconds"],
            timeout=options["timeout"],
            loop=LoopSettings(
                rate=options["rate"],
                max_votes=options["max_votes_per_annotator"],
                idle_grace=options["idle_grace"],
            ),
        )

    def _report(self, result: SimulationResult, campaign: Campaign, oracle: str) -> None:
        for stats in result.annotators:
            line = f"{stats.username}: {stats.votes} votes, {stats.errors} errors, stopped: {stats.stop_reason}"
            self.stdout.write(line + "".join(f"\n  {message}" for message in stats.messages))
        self.stdout.write(json.dumps({"campaign": campaign.pk, "oracle": oracle, **result.summary()}))


def _validate(options: dict) -> None:
    """CommandError for any option out of range (the oracle and the campaign are checked apart)."""
    problems = {
        "--noise must be within [0, 1]": not 0.0 <= options["noise"] <= 1.0,
        "--position-bias must be within [0, 1]": not 0.0 <= options["position_bias"] <= 1.0,
        "--annotators must be at least 1": options["annotators"] < 1,
        "--rate must be 0 (as fast as possible) or positive": options["rate"] < 0,
        "--max-votes-per-annotator must be at least 1": options["max_votes_per_annotator"] is not None
        and options["max_votes_per_annotator"] < 1,
        "--idle-grace must be 0 or positive": options["idle_grace"] < 0,
        "--timeout must be positive": options["timeout"] <= 0,
        "--think-seconds must be positive": options["think_seconds"] is not None and options["think_seconds"] <= 0,
        "--base-url must be an http(s) URL such as http://127.0.0.1:8000": not BASE_URL.match(options["base_url"]),
        "--prefix may hold letters, digits and @.+-_ only": not PREFIX.match(options["prefix"]),
    }
    wrong = [problem for problem, failed in problems.items() if failed]
    if wrong:
        raise CommandError("; ".join(wrong) + ".")


def _open_campaign(pk: int) -> Campaign:
    campaign = Campaign.objects.filter(pk=pk).first()
    if campaign is None:
        raise CommandError(f"No campaign {pk}.")
    if campaign.status != CampaignStatus.OPEN:
        hint = " (its images are still being generated)" if campaign.status == CampaignStatus.PREPARING else ""
        raise CommandError(f"Campaign {pk} is {campaign.status}{hint}: only an open campaign hands out pairs.")
    return campaign


@transaction.atomic
def _annotator_accounts(campaign: Campaign, prefix: str, count: int) -> list[tuple[str, str]]:
    """(username, token) of ``<prefix>-1..count``: annotators of ``campaign``, created when missing."""
    group, _ = Group.objects.get_or_create(name=Role.ANNOTATOR)
    accounts = []
    for i in range(1, count + 1):
        user, created = get_user_model().objects.get_or_create(username=f"{prefix}-{i}")
        if created:
            user.set_unusable_password()  # token only: nobody logs in as a simulated annotator
            user.save(update_fields=["password"])
        user.groups.add(group)
        campaign.annotators.add(user)
        accounts.append((user.username, Token.objects.get_or_create(user=user)[0].key))
    return accounts
