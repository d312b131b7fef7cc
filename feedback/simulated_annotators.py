"""Simulated annotators on a campaign, as one function call: their accounts here, their voting in ``simulation``.

``feedback.simulation`` (no Django) is the annotators' client of the REST API. This module is its Django side:
it checks the campaign, creates (or reuses) the accounts ``<prefix>-1..N`` in the annotator group with tokens,
and runs the simulation against the web server. ``manage.py simulate_annotators`` and the RLHF cycle
(``orchestration.cycle``) both call :func:`simulate_votes`.
"""

from __future__ import annotations

import dataclasses

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from rest_framework.authtoken.models import Token

from core.roles import Role
from feedback.criteria import criteria_of
from feedback.models import Campaign, CampaignStatus
from feedback.simulation import FatalError, Simulation, SimulationResult, check_server, run_simulation

FAILED_STOPS = ("failed", "crashed", "unreachable")


class SimulationRefused(Exception):
    """The simulation cannot start: no such campaign, a campaign that is not open, or an unreachable server."""


class NoVoteCast(Exception):
    """Every annotator stopped on an error before casting a vote; ``result`` holds their stats."""

    def __init__(self, message: str, result: SimulationResult):
        super().__init__(message)
        self.result = result


def open_campaign(pk: int) -> Campaign:
    """The campaign ``pk`` if it hands out pairs, else :class:`SimulationRefused` saying why."""
    campaign = Campaign.objects.filter(pk=pk).first()
    if campaign is None:
        raise SimulationRefused(f"No campaign {pk}.")
    if campaign.status != CampaignStatus.OPEN:
        hint = " (its images are still being generated)" if campaign.status == CampaignStatus.PREPARING else ""
        raise SimulationRefused(f"Campaign {pk} is {campaign.status}{hint}: only an open campaign hands out pairs.")
    return campaign


@transaction.atomic
def annotator_accounts_ensure(*, campaign: Campaign, prefix: str, count: int) -> list[tuple[str, str]]:
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


def simulate_votes(simulation: Simulation, *, annotators: int, prefix: str) -> SimulationResult:
    """Run ``annotators`` simulated annotators on ``simulation.campaign`` until nothing is left to rate.

    Raises :class:`SimulationRefused` before any vote (campaign not open, server unreachable) and
    :class:`NoVoteCast` when every annotator failed without voting.
    """
    if annotators < 1:
        raise SimulationRefused(f"At least one annotator is needed, got {annotators}.")
    campaign = open_campaign(simulation.campaign)
    simulation = dataclasses.replace(simulation, criteria=tuple(criteria_of(campaign.questions)))
    accounts = annotator_accounts_ensure(campaign=campaign, prefix=prefix, count=annotators)
    try:
        check_server(simulation.base_url, accounts[0][1], campaign.pk, timeout=simulation.timeout)
    except FatalError as exc:
        raise SimulationRefused(str(exc)) from exc
    result = run_simulation(simulation, accounts)
    failed = [a for a in result.annotators if a.stop_reason in FAILED_STOPS]
    if failed and not any(a.votes for a in result.annotators):
        raise NoVoteCast("No vote was cast: " + "; ".join(m for a in failed for m in a.messages[:1]), result)
    return result
