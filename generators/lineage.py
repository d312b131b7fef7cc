"""Read-only lineage queries: model versions as trees from their base checkpoint to the newest fine-tune.

What made each version (its ``finetune`` run, the reward model or oracle it was tuned against, the campaigns
whose votes trained that reward model) is read through reverse relations, so this module imports nothing
from the finetune or rewards apps.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import QuerySet

from core.models import Artifact
from generators.models import BaseModel, ModelVersion, PromptSet, Split

# The name finetune.executors saves its before/after grid under (not imported: that module pulls in torch).
GRID_ARTIFACT = "eval_grid.png"


@dataclass
class VersionInfo:
    """One version and what made it; ``depth`` is its distance from the root of its tree."""

    version: ModelVersion
    depth: int = 0
    finetune: Any = None  # finetune.models.FineTune or None
    aliases: list[str] = field(default_factory=list)
    campaigns: list[Any] = field(default_factory=list)  # feedback.models.Campaign

    @property
    def run(self):
        """The run that made this version (the fine-tune run), or None for a base version."""
        if self.finetune is not None:
            return self.finetune.run
        return self.version.produced_by_run

    @property
    def reward_model(self):
        return self.finetune.reward_model if self.finetune is not None else None

    @property
    def oracle(self) -> str:
        return self.finetune.oracle if self.finetune is not None else ""


@dataclass
class BaseLineage:
    """A base model and its versions in tree order (depth-first, children oldest first)."""

    base_model: BaseModel
    versions: list[VersionInfo]


def versions_with_provenance() -> QuerySet[ModelVersion]:
    """Versions with everything the lineage pages show, in a fixed number of queries."""
    return (
        ModelVersion.objects.select_related(
            "base_model",
            "parent",
            "created_by",
            "produced_by_run",
            "finetune__run",
            "finetune__reward_model__dataset",
            "finetune__reward_model__training_run",
        )
        .prefetch_related("aliases", "finetune__reward_model__dataset__campaigns")
        .order_by("base_model__name", "created_at", "id")
    )


def _finetune_of(version: ModelVersion):
    try:
        return version.finetune
    except ObjectDoesNotExist:
        return None


def _info(version: ModelVersion, depth: int = 0) -> VersionInfo:
    finetune = _finetune_of(version)
    campaigns: list[Any] = []
    reward_model = finetune.reward_model if finetune is not None else None
    if reward_model is not None and reward_model.dataset is not None:
        campaigns = sorted(reward_model.dataset.campaigns.all(), key=lambda c: c.pk)
    return VersionInfo(
        version=version,
        depth=depth,
        finetune=finetune,
        aliases=sorted(alias.name for alias in version.aliases.all()),
        campaigns=campaigns,
    )


def _tree_order(versions: list[ModelVersion]) -> list[tuple[ModelVersion, int]]:
    """Depth-first order with depths: roots (no parent in this list) first, each child after its parent."""
    ids = {v.pk for v in versions}
    children: dict[int | None, list[ModelVersion]] = defaultdict(list)
    for version in versions:
        children[version.parent_id if version.parent_id in ids else None].append(version)
    for siblings in children.values():
        siblings.sort(key=lambda v: (v.created_at, v.pk))
    ordered: list[tuple[ModelVersion, int]] = []
    seen: set[int] = set()
    stack = [(root, 0) for root in reversed(children[None])]
    while stack:
        version, depth = stack.pop()
        if version.pk in seen:
            continue
        seen.add(version.pk)
        ordered.append((version, depth))
        stack.extend((child, depth + 1) for child in reversed(children[version.pk]))
    return ordered


def lineage_tree() -> list[BaseLineage]:
    """Every base model with its versions as a tree, base first, newest branches last."""
    grouped: dict[int, list[ModelVersion]] = defaultdict(list)
    for version in versions_with_provenance():
        grouped[version.base_model_id].append(version)
    trees = []
    for base in BaseModel.objects.filter(pk__in=grouped).order_by("name"):
        ordered = _tree_order(grouped[base.pk])
        trees.append(BaseLineage(base_model=base, versions=[_info(v, depth) for v, depth in ordered]))
    return trees


def version_info(version: ModelVersion) -> VersionInfo:
    """One version with its provenance (re-read with the related rows the pages need)."""
    return _info(versions_with_provenance().get(pk=version.pk))


def ancestry(version: ModelVersion) -> list[ModelVersion]:
    """The chain base → … → ``version`` (each entry the parent of the next)."""
    by_id = {v.pk: v for v in ModelVersion.objects.filter(base_model_id=version.base_model_id)}
    chain = [version]
    current = version
    while current.parent_id is not None and len(chain) <= len(by_id) + 1:
        parent = by_id.get(current.parent_id) or ModelVersion.objects.get(pk=current.parent_id)
        chain.append(parent)
        current = parent
    return list(reversed(chain))


def children_of(version: ModelVersion) -> list[VersionInfo]:
    """The versions fine-tuned directly from ``version``, oldest first."""
    return [_info(child) for child in versions_with_provenance().filter(parent=version).order_by("created_at", "id")]


def eval_grid_artifact(version: ModelVersion) -> Artifact | None:
    """The before/after image grid the fine-tune run that made ``version`` saved, if any."""
    run_id = version.produced_by_run_id
    finetune = _finetune_of(version)
    if finetune is not None:
        run_id = finetune.run_id
    if run_id is None:
        return None
    return Artifact.objects.filter(run_id=run_id, name=GRID_ARTIFACT).first()


def default_eval_prompt_set() -> PromptSet | None:
    """The set named by the DEFAULT_EVAL_PROMPT_SET setting if it exists, else the first eval set, else the first."""
    return (
        PromptSet.objects.filter(name=settings.DEFAULT_EVAL_PROMPT_SET).first()
        or PromptSet.objects.filter(split=Split.EVAL).order_by("name").first()
        or PromptSet.objects.order_by("name").first()
    )
