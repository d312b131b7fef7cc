"""The ``selection_refit`` run: refit a campaign's quick reward model, write hand-out priorities and a learning curve.

A thin adapter (imported on workers only): it reads the campaign's votes and open pairs through
``feedback.refit_selectors``, the images through ``generators.selectors``, runs
``rewards.learning_curve.refit_campaign`` (no Django), then asks ``feedback.services.pair_priorities_set`` to store
the priorities (uncertainty campaigns) and ``rewards.services.campaign_refit_record`` to store the curve.
Image features are kept per worker process and backbone, so a refit computes only the new images' features.
"""

from __future__ import annotations

from core import services as run_services
from core.devices import resolve_device
from core.jobs import JobContext, JobFailed
from core.models import Run
from feedback import refit_selectors
from feedback import services as feedback_services
from feedback.models import Campaign, Selection
from generators import selectors as generator_selectors
from rewards import services
from rewards.loading import resolve_backbone

_FEATURES: dict[tuple[str, str], tuple[object, set[int]]] = {}


def _features(backbone: str, device: str):
    """This process's feature cache of ``backbone`` and the ids of the images in it."""
    from rewards.features import FeatureCache

    key = (backbone, device)
    if key not in _FEATURES:
        _FEATURES.clear()  # one backbone at a time: a cache holds every image's patch tokens
        _FEATURES[key] = (FeatureCache(backbone, device=device), set())
    return _FEATURES[key]


def _read_image(pk: int) -> bytes:
    with generator_selectors.image_file_of(pk).file.open("rb") as handle:
        return handle.read()


def selection_refit(run: Run, ctx: JobContext) -> dict:
    from rewards.data import RewardDataError
    from rewards.learning_curve import OpenPair, RefitSettings, Vote, cache_images, refit_campaign

    config = run.config
    campaign = Campaign.objects.get(pk=config["campaign"])
    votes = [
        Vote(v.pair, v.prompt, v.image_a, v.image_b, v.choice, v.annotator)
        for v in refit_selectors.refit_votes(campaign)
    ]
    open_pairs = [OpenPair(p.pair, p.prompt, p.image_a, p.image_b) for p in refit_selectors.open_pairs(campaign)]
    ctx.report_progress(0.05, f"{len(votes)} votes, {len(open_pairs)} pairs to rank")
    try:
        features, known = _features(resolve_backbone(config["backbone"]), resolve_device(config["device"]))
    except Exception as exc:
        raise JobFailed(f"Backbone {config['backbone']!r} could not be loaded: {exc}") from exc
    images = {i for v in votes for i in (v.image_a, v.image_b)} | {
        i for p in open_pairs for i in (p.image_a, p.image_b)
    }
    computed = cache_images(features, sorted(images), _read_image, known)
    ctx.report_progress(0.2, f"features of {computed} new images")
    settings = RefitSettings(
        fractions=tuple((i + 1) / config["curve_points"] for i in range(config["curve_points"])),
        test_fraction=config["test_fraction"],
        min_votes=config["min_votes"],
        ensemble_size=config["ensemble_size"],
        head=config["head"],
        seed=config["seed"],
    )
    try:
        uncertainty = campaign.selection == Selection.UNCERTAINTY
        outcome = refit_campaign(votes, open_pairs, features, settings, priorities=uncertainty)
    except RewardDataError as exc:
        raise JobFailed(f"Campaign {campaign.name!r}: {exc}") from exc
    ctx.report_progress(0.9, "storing")
    if ctx.should_stop():
        return {"campaign": campaign.pk, "stopped": True}
    written = 0
    if uncertainty and outcome.priorities:
        written = feedback_services.pair_priorities_set(campaign_id=campaign.pk, priorities=outcome.priorities)
    with run_services.run_fenced(run_id=ctx.run_id, attempt=ctx.attempt):
        services.campaign_refit_record(run=run, outcome=outcome, priorities=written)
    for point in outcome.points:
        if point.accuracy is not None:
            ctx.log_metrics(point.votes, {"heldout_decisive_accuracy": point.accuracy})
    last = next((p.accuracy for p in reversed(outcome.points) if p.accuracy is not None), None)
    return {
        "campaign": campaign.pk,
        "votes": outcome.used_votes,
        "test_votes": outcome.test_votes,
        "heldout_decisive_accuracy": last,
        "zero_shot_accuracy": outcome.zero_shot_accuracy,
        "human_ceiling": outcome.human_ceiling,
        "priorities": written,
        "priority_source": outcome.priority_source,
        "new_image_features": computed,
        "seconds": outcome.seconds,
    }
