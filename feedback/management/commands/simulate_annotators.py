"""Simulated annotators voting on a campaign through the public REST API, judged by a pixel oracle.

Accounts ``<prefix>-1..N`` are created (or reused) in the annotator group, added to the campaign and given
tokens through the ORM (``feedback.simulated_annotators.simulate_votes``, which the RLHF cycle calls too); every
lease and vote then goes over HTTP to ``--base-url``, exactly as a person's browser would. The last line printed is
a JSON summary.
"""

from __future__ import annotations

import json
import re

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core import plugins
from feedback.simulated_annotators import NoVoteCast, SimulationRefused, simulate_votes
from feedback.simulation import LoopSettings, OracleError, Simulation, SimulationResult, resolve_pair_oracle

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
        try:
            result = simulate_votes(simulation, annotators=options["annotators"], prefix=options["prefix"])
        except SimulationRefused as exc:
            raise CommandError(str(exc)) from exc
        except NoVoteCast as exc:
            self._report(exc.result, simulation.campaign, options["oracle"])
            raise CommandError(str(exc)) from exc
        self._report(result, simulation.campaign, options["oracle"])

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

    def _report(self, result: SimulationResult, campaign: int, oracle: str) -> None:
        for stats in result.annotators:
            line = f"{stats.username}: {stats.votes} votes, {stats.errors} errors, stopped: {stats.stop_reason}"
            self.stdout.write(line + "".join(f"\n  {message}" for message in stats.messages))
        self.stdout.write(json.dumps({"campaign": campaign, "oracle": oracle, **result.summary()}))


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
