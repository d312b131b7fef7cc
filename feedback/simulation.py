"""Simulated annotators: pairwise oracles, a noisy annotator policy and an HTTP client of the REST contract.

Plain Python, no Django: a simulated annotator is a client like any other. It authenticates with
``Authorization: Token <key>``, leases pairs with ``GET /api/v1/campaigns/{id}/next/``, downloads both
images, asks a pairwise oracle which is better, perturbs the answer (position bias, noise) and posts it to
``POST /api/v1/votes/``.

An oracle is any function ``(prompt, image_left, image_right) -> "left" | "right" | "tie" | "both_bad"``
taking PIL images, named by a registered ``pair_oracle`` plug-in (:mod:`core.plugins`; the sandbox registers
``larger``, ``colour`` and ``shape``) or, since the simulation is a local user's own tool, by a dotted path
(``pkg.mod.fn`` or ``pkg.mod:fn``).
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import Any

from PIL import Image

from core import plugins

log = logging.getLogger(__name__)

CHOICES = ("left", "right", "tie", "both_bad")
PairOracle = Callable[[str, Image.Image, Image.Image], str]
Reward = Callable[[str, Image.Image], float]

TIE_MARGIN = 0.02  # rewards closer than this are a tie
BOTH_BAD_BELOW = 0.05  # both rewards below this: "both_bad" (no image shows what the prompt asks)


class OracleError(ValueError):
    """An oracle name that resolves to nothing callable, or an oracle answer outside :data:`CHOICES`."""


# --- Oracles --------------------------------------------------------------------------------------------


def reward_oracle(
    reward: Reward, *, tie_margin: float = TIE_MARGIN, both_bad_below: float = BOTH_BAD_BELOW, name: str = ""
) -> PairOracle:
    """A pairwise oracle from a pointwise reward in [0, 1].

    The higher reward wins; ``|Δ| < tie_margin`` is a ``"tie"``; when both rewards are below
    ``both_bad_below`` (0 disables it) the answer is ``"both_bad"``.
    """

    def judge(prompt: str, image_left: Image.Image, image_right: Image.Image) -> str:
        left, right = reward(prompt, image_left), reward(prompt, image_right)
        if max(left, right) < both_bad_below:
            return "both_bad"
        if abs(left - right) < tie_margin:
            return "tie"
        return "left" if left > right else "right"

    judge.__name__ = judge.__qualname__ = name or f"{getattr(reward, '__name__', 'reward')}_oracle"
    judge.__doc__ = f"Pairwise oracle from {getattr(reward, '__name__', 'a reward')} (tie margin {tie_margin})."
    return judge


def resolve_pair_oracle(name: str) -> PairOracle:
    """The oracle called ``name``: a registered ``pair_oracle``, ``pkg.mod:attr.attr`` or ``pkg.mod.fn``."""
    name = (name or "").strip()
    if name in plugins.names("pair_oracle"):
        try:
            return plugins.resolve("pair_oracle", name)
        except plugins.PluginError as exc:
            raise OracleError(str(exc)) from exc
    if "." not in name and ":" not in name:
        raise OracleError(
            f"Unknown oracle {name!r}: use a registered one ({', '.join(plugins.names('pair_oracle')) or 'none'}) "
            "or a dotted path to a function (pkg.module.function or pkg.module:function)."
        )
    module_name, _, attrs = name.partition(":") if ":" in name else name.rpartition(".")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise OracleError(f"Oracle {name!r}: cannot import module {module_name!r} ({exc}).") from exc
    for attr in attrs.split("."):
        if not hasattr(target, attr):
            raise OracleError(f"Oracle {name!r}: {module_name!r} has no attribute {attrs!r}.")
        target = getattr(target, attr)
    if not callable(target):
        raise OracleError(f"Oracle {name!r} is not callable.")
    return target


def checked_choice(answer: object) -> str:
    """The oracle's answer, or :class:`OracleError` when it is not one of :data:`CHOICES`."""
    if answer not in CHOICES:
        raise OracleError(f"An oracle must answer one of {', '.join(CHOICES)}; it answered {answer!r}.")
    return str(answer)


# --- The annotator's policy ------------------------------------------------------------------------------

_FLIPPED = {"left": "right", "right": "left"}


def perturb(truth: str, rng: random.Random, *, noise: float = 0.0, position_bias: float = 0.0) -> str:
    """The answer given when the oracle says ``truth``.

    With probability ``position_bias`` the answer is ``"left"`` whatever the images; otherwise, with
    probability ``noise``, left and right are swapped (``"tie"`` and ``"both_bad"`` stay). Both draws are
    always taken, so one seed gives one stream of decisions whatever the answers.
    """
    biased, flipped = rng.random() < position_bias, rng.random() < noise
    if biased:
        return "left"
    return _FLIPPED.get(truth, truth) if flipped else truth


@dataclass
class SimulatedAnnotator:
    """How one simulated annotator answers: an oracle, noise, position bias and a seeded RNG.

    ``think_seconds`` None reports the measured seconds from lease to vote; a number reports a simulated
    think time drawn around it (nothing sleeps: ``rate`` paces the votes).
    """

    oracle: PairOracle
    noise: float = 0.0
    position_bias: float = 0.0
    seed: int | str = 0
    think_seconds: float | None = None
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        for label, p in (("noise", self.noise), ("position_bias", self.position_bias)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{label} must be within [0, 1], got {p}.")
        if self.think_seconds is not None and self.think_seconds <= 0:
            raise ValueError(f"think_seconds must be positive, got {self.think_seconds}.")
        self.rng = random.Random(self.seed)

    def judge(self, prompt: str, left: Image.Image, right: Image.Image) -> tuple[str, str]:
        """(the noiseless oracle's answer, the answer given)."""
        truth = checked_choice(self.oracle(prompt, left, right))
        return truth, perturb(truth, self.rng, noise=self.noise, position_bias=self.position_bias)

    def seconds(self, measured: float) -> float:
        if self.think_seconds is None:
            return round(measured, 3)
        return round(self.rng.gammavariate(4.0, self.think_seconds / 4.0), 3)


# --- HTTP -----------------------------------------------------------------------------------------------


class TransientError(Exception):
    """The server could not be reached or answered 5xx/429, even after the retries."""


class FatalError(Exception):
    """An answer that retrying will not change (refused, not found, invalid): the annotator stops."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def detail(self) -> str:
        return self.body[:200].decode("utf-8", "replace")


_TRANSIENT = (urllib.error.URLError, HTTPException, ConnectionError, socket.timeout, TimeoutError)


class ApiClient:
    """A token-authenticated client of the platform's REST API with retries and exponential backoff.

    Connection errors, timeouts, 429 and 5xx are retried (``retries`` times, waits ``backoff * 2**i``
    capped at 5 s); every other status is returned. Re-posting a vote is safe: the same vote again is a 200.
    """

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0, retries: int = 4, backoff: float = 0.2):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"The base URL must be http:// or https://, got {base_url!r}.")
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.retried = 0

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"

    def get(self, path: str) -> Response:
        return self._with_retries("GET", path, None)

    def post_json(self, path: str, body: dict) -> Response:
        return self._with_retries("POST", path, json.dumps(body).encode())

    def _with_retries(self, method: str, path: str, data: bytes | None) -> Response:
        for attempt in range(self.retries + 1):
            try:
                response = self._send(method, path, data)
                if response.status != 429 and response.status < 500:
                    return response
                problem = f"HTTP {response.status}: {response.detail()}"
            except _TRANSIENT as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                self.retried += 1
                log.debug("%s %s failed (%s); retry %d", method, path, problem, attempt + 1)
                time.sleep(min(5.0, self.backoff * 2**attempt))
        raise TransientError(f"{method} {path}: {problem}")

    def _send(self, method: str, path: str, data: bytes | None) -> Response:
        headers = dict(self.headers, **({"Content-Type": "application/json"} if data is not None else {}))
        # Only http(s): the base URL is checked above and absolute paths must start with http(s)://.
        request = urllib.request.Request(self.url(path), data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                return Response(reply.status, reply.read())
        except urllib.error.HTTPError as error:  # a status, not a transport failure
            try:
                body = error.read()
            except (OSError, HTTPException, AttributeError):
                body = b""
            finally:
                error.close()
            return Response(error.code, body)


def check_server(base_url: str, token: str, campaign: int, *, timeout: float = 10.0) -> None:
    """Fail early, with a clear message, when the server is unreachable or does not hand out ``campaign``."""
    try:
        response = ApiClient(base_url, token, timeout=timeout, retries=1).get("/api/v1/campaigns/")
    except TransientError as exc:
        raise FatalError(f"Cannot reach the platform at {base_url} ({exc}). Is the web server running?") from exc
    if response.status == 401:
        raise FatalError(f"{base_url} rejected the annotator's token: does it serve this database?")
    if response.status != 200:
        raise FatalError(f"{base_url}/api/v1/campaigns/ answered HTTP {response.status}: {response.detail()}")
    if campaign not in {row.get("id") for row in response.json() or []}:
        raise FatalError(f"{base_url} does not offer campaign {campaign} to the annotator (another database?).")


# --- The annotator loop ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoopSettings:
    """How annotators pace themselves and when they stop."""

    rate: float = 0.0  # votes per second per annotator; 0 = as fast as possible
    max_votes: int | None = None  # per annotator
    idle_grace: float = 2.0  # keep polling this long after "nothing left" (204): leases of others may lapse
    poll_interval: float = 0.25
    max_consecutive_errors: int = 5


@dataclass
class AnnotatorStats:
    username: str
    votes: int = 0
    replayed: int = 0  # a re-posted vote the server already had (200)
    agreed: int = 0  # votes equal to the noiseless oracle's answer
    conflicts: int = 0  # 409: a lease lost to others
    errors: int = 0
    retries: int = 0
    choices: Counter = field(default_factory=Counter)
    stop_reason: str = ""
    messages: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.messages) < 5:
            self.messages.append(message)


class AnnotatorLoop:
    """One simulated annotator working a campaign through the REST contract until nothing is left."""

    def __init__(
        self,
        client: ApiClient,
        annotator: SimulatedAnnotator,
        campaign: int,
        settings: LoopSettings,
        stats: AnnotatorStats,
        stop: threading.Event,
        criteria: Sequence[str] = (),
    ):
        self.client, self.annotator, self.campaign = client, annotator, campaign
        self.settings, self.stats, self.stop = settings, stats, stop
        self.criteria = tuple(criteria)  # a campaign of several questions: each answered with the one judgement

    def run(self) -> AnnotatorStats:
        try:
            self.stats.stop_reason = self._loop()
        except (FatalError, OracleError) as exc:
            self.stats.error(str(exc))
            self.stats.stop_reason = "failed"
        except Exception as exc:  # noqa: BLE001 - a simulation thread reports, it does not crash the others
            log.exception("annotator %s crashed", self.stats.username)
            self.stats.error(f"{type(exc).__name__}: {exc}")
            self.stats.stop_reason = "crashed"
        self.stats.retries = self.client.retried
        return self.stats

    def _loop(self) -> str:
        settings, idle_since, failures = self.settings, None, 0
        next_slot = time.monotonic()
        while not self.stop.is_set():
            if settings.max_votes is not None and self.stats.votes >= settings.max_votes:
                return "max_votes"
            if settings.rate > 0 and self.stop.wait(max(0.0, next_slot - time.monotonic())):
                break
            try:
                pair = self._next_pair()
                if pair is None:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since >= settings.idle_grace:
                        return "nothing_left"
                    self.stop.wait(settings.poll_interval)
                    continue
                idle_since = None
                self._rate(pair)
                failures = 0
            except TransientError as exc:
                failures += 1
                self.stats.error(str(exc))
                if failures >= settings.max_consecutive_errors:
                    return "unreachable"
                self.stop.wait(min(5.0, 0.5 * 2**failures))
                continue
            if settings.rate > 0:
                next_slot = max(next_slot, time.monotonic() - 1.0 / settings.rate) + 1.0 / settings.rate
        return "stopped"

    def _next_pair(self) -> dict | None:
        response = self.client.get(f"/api/v1/campaigns/{self.campaign}/next/")
        if response.status == 204:
            return None
        if response.status != 200:
            raise FatalError(f"GET next: HTTP {response.status}: {response.detail()}")
        return response.json()

    def _image(self, shown: dict) -> Image.Image:
        response = self.client.get(shown["url"])
        if response.status != 200:
            raise FatalError(f"GET {shown['url']}: HTTP {response.status}: {response.detail()}")
        return Image.open(io.BytesIO(response.body)).convert("RGB")

    def _rate(self, pair: dict) -> None:
        started = time.monotonic()
        left, right = self._image(pair["left"]), self._image(pair["right"])
        truth, choice = self.annotator.judge(pair["prompt"], left, right)
        seconds = self.annotator.seconds(time.monotonic() - started)
        vote = {"assignment": pair["assignment"], "choice": choice, "seconds": seconds}
        if len(self.criteria) > 1 and choice != "skip":
            del vote["choice"]
            vote["answers"] = dict.fromkeys(self.criteria, choice)
        response = self.client.post_json("/api/v1/votes/", vote)
        if response.status == 409:
            self.stats.conflicts += 1
            return
        if response.status not in (200, 201):
            raise FatalError(f"POST vote: HTTP {response.status}: {response.detail()}")
        self.stats.votes += 1
        self.stats.replayed += response.status == 200
        self.stats.agreed += choice == truth
        self.stats.choices[choice] += 1


# --- Many annotators ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Simulation:
    """A simulation of annotators on one campaign of the platform at ``base_url``."""

    base_url: str
    campaign: int
    oracle: PairOracle
    noise: float = 0.0
    position_bias: float = 0.0
    seed: int = 0
    think_seconds: float | None = None
    timeout: float = 30.0
    retries: int = 4
    loop: LoopSettings = LoopSettings()
    criteria: tuple[str, ...] = ()  # the campaign's question keys, when it asks several (all answered alike)


@dataclass
class SimulationResult:
    annotators: list[AnnotatorStats]
    seconds: float

    def summary(self) -> dict:
        """Votes cast, per-choice counts, errors, seconds, votes/s and agreement with the noiseless oracle."""
        votes = sum(a.votes for a in self.annotators)
        choices = sum((a.choices for a in self.annotators), Counter())
        return {
            "annotators": len(self.annotators),
            "votes": votes,
            "choices": {c: choices.get(c, 0) for c in CHOICES},
            "replayed": sum(a.replayed for a in self.annotators),
            "conflicts": sum(a.conflicts for a in self.annotators),
            "errors": sum(a.errors for a in self.annotators),
            "retries": sum(a.retries for a in self.annotators),
            "seconds": round(self.seconds, 3),
            "votes_per_second": round(votes / self.seconds, 3) if self.seconds > 0 else None,
            "agreement": round(sum(a.agreed for a in self.annotators) / votes, 4) if votes else None,
            "stopped": dict(Counter(a.stop_reason for a in self.annotators)),
        }


def run_simulation(
    simulation: Simulation, annotators: Sequence[tuple[str, str]], stop: threading.Event | None = None
) -> SimulationResult:
    """Run one thread per ``(username, token)`` until each has nothing left (or ``stop`` is set)."""
    stop = stop or threading.Event()
    loops = [_loop_for(simulation, username, token, stop) for username, token in annotators]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, len(loops)), thread_name_prefix="annotator") as pool:
        futures = [pool.submit(loop.run) for loop in loops]
        try:
            stats = [future.result() for future in futures]
        except BaseException:  # KeyboardInterrupt: let every annotator finish its vote, then stop
            stop.set()
            raise
    return SimulationResult(annotators=stats, seconds=time.monotonic() - started)


def _loop_for(simulation: Simulation, username: str, token: str, stop: threading.Event) -> AnnotatorLoop:
    annotator = SimulatedAnnotator(
        oracle=simulation.oracle,
        noise=simulation.noise,
        position_bias=simulation.position_bias,
        seed=f"{simulation.seed}:{username}",
        think_seconds=simulation.think_seconds,
    )
    client = ApiClient(simulation.base_url, token, timeout=simulation.timeout, retries=simulation.retries)
    return AnnotatorLoop(
        client, annotator, simulation.campaign, simulation.loop, AnnotatorStats(username), stop, simulation.criteria
    )
