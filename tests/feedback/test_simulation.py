"""Simulated annotators: the oracles, the noisy policy, and votes cast over HTTP against a live server."""

from __future__ import annotations

import io
import json
import random
import threading
from collections import Counter

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from feedback import services
from feedback.models import Assignment, Campaign, Pair, Vote
from feedback.simulation import (
    AnnotatorLoop,
    AnnotatorStats,
    ApiClient,
    LoopSettings,
    OracleError,
    Response,
    SimulatedAnnotator,
    perturb,
    resolve_pair_oracle,
)
from generators import services as generator_services
from generators.models import ModelVersion
from generators.sandbox import pair_oracles
from generators.sandbox.dataset import COLOURS, render
from tests.support.images import store_images

SMALL, LARGE = 10, 24


def always_right(prompt: str, image_left: Image.Image, image_right: Image.Image) -> str:
    """A user's own oracle, reached by dotted path."""
    return "right"


def _shape(shape: str = "square", colour: str = "red", side: int = LARGE) -> Image.Image:
    return Image.fromarray(render(shape, COLOURS[colour], side))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- The policy -----------------------------------------------------------------------------------------


def test_noise_flips_left_and_right_at_its_rate_and_leaves_ties():
    rng, n = random.Random(1), 10_000
    answers = Counter(perturb("left", rng, noise=0.2) for _ in range(n))
    assert 0.18 < answers["right"] / n < 0.22 and answers["left"] + answers["right"] == n
    assert {perturb(t, rng, noise=1.0) for t in ("tie", "both_bad") for _ in range(50)} == {"tie", "both_bad"}
    assert all(perturb("right", rng, noise=1.0) == "left" for _ in range(50))


def test_position_bias_answers_left_at_its_rate():
    rng, n = random.Random(2), 10_000
    answers = Counter(perturb("right", rng, position_bias=0.3) for _ in range(n))
    assert 0.28 < answers["left"] / n < 0.32
    assert Counter(perturb("tie", rng, position_bias=1.0) for _ in range(20)) == {"left": 20}


def test_a_seeded_annotator_repeats_its_decisions_and_rejects_bad_settings():
    left, right = _shape(side=SMALL), _shape(side=LARGE)

    def decisions(seed: int) -> list[str]:
        annotator = SimulatedAnnotator(oracle=pair_oracles.larger, noise=0.5, seed=seed)
        return [annotator.judge("a red square", left, right)[1] for _ in range(40)]

    assert decisions(7) == decisions(7) != decisions(8)
    assert SimulatedAnnotator(oracle=always_right).judge("p", left, right) == ("right", "right")
    assert SimulatedAnnotator(oracle=always_right).seconds(1.23456) == 1.235
    assert SimulatedAnnotator(oracle=always_right, think_seconds=2.0).seconds(99.0) < 60
    with pytest.raises(ValueError, match="noise"):
        SimulatedAnnotator(oracle=always_right, noise=1.5)
    with pytest.raises(OracleError, match="answered 'maybe'"):
        SimulatedAnnotator(oracle=lambda p, a, b: "maybe").judge("p", left, right)


# --- Oracles --------------------------------------------------------------------------------------------


def test_oracles_resolve_by_registered_name_or_dotted_path():
    assert resolve_pair_oracle("larger") is pair_oracles.larger
    assert resolve_pair_oracle("tests.feedback.test_simulation.always_right") is always_right
    assert resolve_pair_oracle("tests.feedback.test_simulation:always_right") is always_right
    registered = "balanced, centred, colour, crisp, even, high, larger, shape"
    with pytest.raises(OracleError, match=f"Unknown oracle 'bigger'.*{registered}"):
        resolve_pair_oracle("bigger")
    with pytest.raises(OracleError, match="cannot import"):
        resolve_pair_oracle("no_such_package.judge")
    with pytest.raises(OracleError, match="no attribute"):
        resolve_pair_oracle("tests.feedback.test_simulation:missing")
    with pytest.raises(OracleError, match="not callable"):
        resolve_pair_oracle("tests.feedback.test_simulation.SMALL")


def test_sandbox_pair_oracles_judge_rendered_sandbox_shapes():
    larger, colour, shape = (resolve_pair_oracle(name) for name in ("larger", "colour", "shape"))
    small, large = _shape(side=SMALL), _shape(side=LARGE)
    assert larger("a red square", small, large) == "right"
    assert larger("a red square", large, small) == "left"
    assert larger("a red square", large, large) == "tie"
    blank = Image.new("RGB", (32, 32), (16, 16, 16))
    assert larger("a red square", blank, blank) == "both_bad"
    assert colour("a blue circle", _shape("circle", "blue"), _shape("circle", "red")) == "left"
    assert colour("a green circle", _shape("circle", "red"), _shape("circle", "red")) == "both_bad"
    assert shape("a red cross", _shape("circle"), _shape("cross")) == "right"


# --- The client loop, against a scripted server ------------------------------------------------------


class ScriptedClient(ApiClient):
    """Answers each (method, path) from a script; an exception in the script is raised like a network error."""

    def __init__(self, script: dict[tuple[str, str], list]):
        super().__init__("http://platform.invalid", "key", retries=2, backoff=0.0)
        self.script, self.sent = script, []

    def _send(self, method: str, path: str, data: bytes | None) -> Response:
        self.sent.append((method, path, json.loads(data) if data else None))
        answer = self.script[(method, path)].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_the_loop_retries_a_lost_vote_and_counts_the_replay_once():
    pair = {
        "assignment": 5,
        "pair": 9,
        "prompt": "a red square",
        "left": {"image": 1, "url": "/api/v1/images/1/file/"},
        "right": {"image": 2, "url": "/api/v1/images/2/file/"},
    }
    client = ScriptedClient(
        {
            ("GET", "/api/v1/campaigns/3/next/"): [
                Response(503, b"busy"),
                Response(200, json.dumps(pair).encode()),
                Response(204, b""),
            ],
            ("GET", "/api/v1/images/1/file/"): [Response(200, _png(_shape(side=SMALL)))],
            ("GET", "/api/v1/images/2/file/"): [Response(200, _png(_shape(side=LARGE)))],
            ("POST", "/api/v1/votes/"): [TimeoutError("read timed out"), Response(200, b"{}")],
        }
    )
    annotator = SimulatedAnnotator(oracle=pair_oracles.larger)
    settings = LoopSettings(idle_grace=0.0)

    stats = AnnotatorLoop(client, annotator, 3, settings, AnnotatorStats("sim-1"), threading.Event()).run()

    posts = [body for method, _, body in client.sent if method == "POST"]
    assert posts[0] == posts[1] and posts[0]["assignment"] == 5 and posts[0]["choice"] == "right"
    assert (stats.votes, stats.replayed, stats.agreed, stats.retries, stats.errors) == (1, 1, 1, 2, 0)
    assert stats.stop_reason == "nothing_left" and stats.choices == {"right": 1}


# --- Over HTTP ------------------------------------------------------------------------------------------

PROMPTS, K, ANNOTATORS = 4, 2, 3


@pytest.fixture
def shapes_campaign(users, settings, tmp_path) -> tuple[Campaign, set[int]]:
    """A collect campaign of 4 pairs (seeds 0 and 1 of each prompt: one small, one large shape), k=2.

    Returns the campaign and the ids of the large images. Which seed is large alternates by prompt.
    """
    settings.MEDIA_ROOT = tmp_path
    version = ModelVersion.objects.get(base_model=generator_services.base_model_register(name="t", source="org/t"))
    texts = [f"a {c} square" for c in ("red", "blue", "green", "yellow")[:PROMPTS]]
    prompt_set = generator_services.prompt_set_create(name="shapes", split="train", prompts=texts)
    large = set()
    for i, prompt in enumerate(prompt_set.prompts.order_by("id")):
        colour, large_seed = prompt.text.split()[1], i % 2
        sides = {large_seed: LARGE, 1 - large_seed: SMALL}
        images = [(prompt, seed, _png(_shape("square", colour, sides[seed]))) for seed in (0, 1)]
        store_images(version, images, native_size=32)
        large.add(version.images.get(prompt=prompt, seed=large_seed).pk)
    campaign = services.campaign_create(
        name="sim", purpose="collect", prompt_set=prompt_set, model_versions=[version], votes_per_pair=K
    )
    return campaign, large


def _simulate(live_server, campaign: Campaign, *extra: str) -> dict:
    out = io.StringIO()
    call_command(
        "simulate_annotators",
        *("--campaign", str(campaign.pk), "--oracle", "larger", "--annotators", str(ANNOTATORS)),
        *("--base-url", live_server.url, "--idle-grace", "0.3", "--seed", "3", *extra),
        stdout=out,
    )
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.mark.django_db(transaction=True)
def test_simulated_annotators_complete_a_campaign_over_http(live_server, shapes_campaign):
    campaign, large = shapes_campaign
    assert len(large) == PROMPTS

    summary = _simulate(live_server, campaign, "--noise", "0")

    pairs = list(Pair.objects.filter(campaign=campaign))
    assert len(pairs) == PROMPTS and {p.valid_votes for p in pairs} == {K}
    votes = list(Vote.objects.select_related("assignment", "pair"))
    assert len(votes) == PROMPTS * K
    assert len({(v.annotator_id, v.pair_id) for v in votes}) == len(votes)  # nothing voted twice
    for vote in votes:  # the oracle's choice, mapped back through the side image a was shown on
        expected = "a" if vote.pair.image_a_id in large else "b"
        assert vote.choice == expected
        a_side = "left" if vote.assignment.a_on_left else "right"
        assert (vote.submitted == a_side) == (expected == "a")
    assert {v.annotator.username for v in votes} <= {f"sim-{i}" for i in range(1, ANNOTATORS + 1)}
    assert summary["votes"] == PROMPTS * K and summary["errors"] == 0 and summary["agreement"] == 1.0
    assert summary["choices"]["tie"] == summary["choices"]["both_bad"] == 0
    assert summary["stopped"] == {"nothing_left": ANNOTATORS}
    assert not Assignment.objects.filter(status="leased").exists()


@pytest.mark.django_db
def test_the_command_validates_its_inputs(shapes_campaign):
    campaign, _ = shapes_campaign
    with pytest.raises(CommandError, match="No campaign 999"):
        call_command("simulate_annotators", "--campaign", "999")
    with pytest.raises(CommandError, match=r"--noise must be within \[0, 1\]"):
        call_command("simulate_annotators", "--campaign", str(campaign.pk), "--noise", "1.5")
    with pytest.raises(CommandError, match="Unknown oracle 'bigger'"):
        call_command("simulate_annotators", "--campaign", str(campaign.pk), "--oracle", "bigger")
    with pytest.raises(CommandError, match="Cannot reach the platform"):
        call_command("simulate_annotators", "--campaign", str(campaign.pk), "--base-url", "http://127.0.0.1:9")
    Campaign.objects.filter(pk=campaign.pk).update(status="closed")
    with pytest.raises(CommandError, match="is closed: only an open campaign"):
        call_command("simulate_annotators", "--campaign", str(campaign.pk))


@pytest.mark.django_db(transaction=True)
def test_vote_limits_rate_and_position_bias_then_a_rerun_reuses_the_accounts(live_server, shapes_campaign):
    campaign, _ = shapes_campaign

    first = _simulate(live_server, campaign, "--position-bias", "1", "--rate", "5", "--max-votes-per-annotator", "2")

    assert first["votes"] == 2 * ANNOTATORS and first["choices"]["left"] == 2 * ANNOTATORS
    assert first["stopped"] == {"max_votes": ANNOTATORS} and first["seconds"] >= 0.2  # 5 votes/s: 0.2 s apart
    assert set(Vote.objects.values_list("submitted", flat=True)) == {"left"}

    second = _simulate(live_server, campaign)

    assert second["votes"] == PROMPTS * K - 2 * ANNOTATORS and second["agreement"] == 1.0
    assert {p.valid_votes for p in Pair.objects.filter(campaign=campaign)} == {K}
    assert campaign.annotators.filter(username__startswith="sim-").count() == ANNOTATORS
