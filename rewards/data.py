"""Preference pairs for reward training: from votes or Pick-a-Pic rows, prompt-disjoint splits, a cached dataset.

No Django imports. The Django side turns its votes into :class:`VoteRecord` objects (``choice`` already
resolved to the pair's image a/b) and calls :func:`pairs_from_votes`.

What is an error: no pairs at all, and a training set without a single decisive (non-tie) pair — ties alone
carry no information about which image is better, so there is nothing to learn. Validation and test sets may
contain only ties (tie-aware accuracy is still defined) but must not be empty.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from PIL import Image

if TYPE_CHECKING:
    from .model import RewardModel

__all__ = [
    "CHOICES",
    "PairList",
    "PreferenceDataset",
    "PreferencePair",
    "RewardDataError",
    "Splits",
    "VoteRecord",
    "check_training_pairs",
    "collate_batch",
    "labels_for_choice",
    "load_image",
    "pairs_from_pickapic",
    "pairs_from_votes",
    "prompt_weights",
    "split_by_prompt",
]

ImageSource = str | os.PathLike[str] | bytes | Image.Image | np.ndarray
CHOICES = ("a", "b", "tie", "both_bad", "skip")


class RewardDataError(ValueError):
    """The preference data cannot be used as asked (message meant for the user)."""


@dataclass
class PreferencePair:
    """One labelled comparison: labels (1, 0), (0, 1) or (0.5, 0.5); ``pair_key`` groups votes on the same pair."""

    prompt: str
    image_a: ImageSource
    image_b: ImageSource
    label_a: float
    label_b: float
    annotator: str | None = None
    pair_key: str | None = None

    @property
    def is_tie(self) -> bool:
        return self.label_a == self.label_b

    @property
    def winner(self) -> str:
        """The winning side: "a", "b" or "tie"."""
        return "tie" if self.is_tie else ("a" if self.label_a > self.label_b else "b")


@dataclass
class VoteRecord:
    """A vote as the platform stores it: ``choice`` is "a", "b", "tie", "both_bad" or "skip" (against image a/b)."""

    prompt: str
    image_a: ImageSource
    image_b: ImageSource
    choice: str
    annotator: str | None = None
    pair_key: str | None = None


class PairList(list[PreferencePair]):
    """Pairs built from votes; ``dropped`` counts votes left out, by reason."""

    def __init__(self, pairs: Iterable[PreferencePair] = (), dropped: Mapping[str, int] | None = None) -> None:
        super().__init__(pairs)
        self.dropped: dict[str, int] = dict(dropped or {})


def labels_for_choice(choice: str, *, both_bad_as_tie: bool = True) -> tuple[float, float] | None:
    """(label_a, label_b) for a vote choice; None when the vote is left out (skip, or both_bad if not a tie)."""
    if choice == "a":
        return (1.0, 0.0)
    if choice == "b":
        return (0.0, 1.0)
    if choice == "tie" or (choice == "both_bad" and both_bad_as_tie):
        return (0.5, 0.5)
    if choice in ("both_bad", "skip"):
        return None
    raise RewardDataError(f"unknown vote choice {choice!r}: expected one of {', '.join(CHOICES)}")


def pairs_from_votes(
    votes: Iterable[VoteRecord],
    *,
    both_bad_as_tie: bool = True,
    exclude_annotators: Iterable[str] = (),
) -> PairList:
    """Training pairs from votes: skips dropped, ``both_bad`` a tie (or dropped), excluded annotators left out."""
    excluded = {str(a) for a in exclude_annotators}
    pairs, dropped = [], Counter()
    for vote in votes:
        if vote.annotator is not None and str(vote.annotator) in excluded:
            dropped["excluded_annotator"] += 1
            continue
        labels = labels_for_choice(vote.choice, both_bad_as_tie=both_bad_as_tie)
        if labels is None:
            dropped[vote.choice] += 1
            continue
        pairs.append(PreferencePair(vote.prompt, vote.image_a, vote.image_b, *labels, vote.annotator, vote.pair_key))
    return PairList(pairs, dropped)


def pairs_from_pickapic(rows: Iterable[Any], *, both_bad_as_tie: bool = True) -> PairList:
    """Pairs from Pick-a-Pic rows (``feedback.pickapic.PickapicRow`` or anything with the same attributes)."""
    pairs, dropped = [], Counter()
    for row in rows:
        if getattr(row, "both_bad", False) and not both_bad_as_tie:
            dropped["both_bad"] += 1
            continue
        uid_0, uid_1 = getattr(row, "image_0_uid", ""), getattr(row, "image_1_uid", "")
        user = getattr(row, "user_id", None)
        pairs.append(
            PreferencePair(
                prompt=row.caption,
                image_a=row.jpg_0,
                image_b=row.jpg_1,
                label_a=float(row.label_0),
                label_b=float(row.label_1),
                annotator=None if user is None else str(user),
                pair_key=f"{uid_0}:{uid_1}" if uid_0 and uid_1 else None,
            )
        )
    return PairList(pairs, dropped)


def check_training_pairs(pairs: Sequence[PreferencePair], name: str = "training") -> None:
    """Raise :class:`RewardDataError` for an empty set or (training only) a set of ties alone."""
    if not pairs:
        raise RewardDataError(f"no preference pairs in the {name} set: there are no usable votes")
    if name == "training" and all(p.is_tie for p in pairs):
        raise RewardDataError(
            f"all {len(pairs)} training pairs are ties: nothing decisive to learn from (need at least one win)"
        )
    for pair in pairs:
        if pair.label_a < 0 or pair.label_b < 0 or pair.label_a + pair.label_b <= 0:
            raise RewardDataError(f"bad labels ({pair.label_a}, {pair.label_b}) for prompt {pair.prompt!r}")


class Splits(NamedTuple):
    train: list[PreferencePair]
    val: list[PreferencePair]
    test: list[PreferencePair]


def split_by_prompt(
    pairs: Sequence[PreferencePair], *, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> Splits:
    """Seeded split in which every prompt falls in exactly one of train / val / test.

    Prompts (not pairs) are shuffled and cut by the fractions; val and test get at least one prompt each when
    their fraction is > 0, train the rest. Raises :class:`RewardDataError` when there are too few prompts.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise RewardDataError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1:
        raise RewardDataError("val_fraction + test_fraction must leave some prompts for training")
    if not pairs:
        raise RewardDataError("no preference pairs to split: there are no usable votes")
    prompts = sorted({p.prompt for p in pairs})
    random.Random(seed).shuffle(prompts)
    n_val = max(1, round(val_fraction * len(prompts))) if val_fraction > 0 else 0
    n_test = max(1, round(test_fraction * len(prompts))) if test_fraction > 0 else 0
    if len(prompts) - n_val - n_test < 1:
        raise RewardDataError(
            f"too few prompts to split: {len(prompts)} distinct prompt(s) for train + "
            f"{'val + ' if n_val else ''}{'test' if n_test else ''} (need at least {n_val + n_test + 1})"
        )
    val_prompts = set(prompts[:n_val])
    test_prompts = set(prompts[n_val : n_val + n_test])
    splits: dict[str, list[PreferencePair]] = {"train": [], "val": [], "test": []}
    for pair in pairs:
        key = "val" if pair.prompt in val_prompts else "test" if pair.prompt in test_prompts else "train"
        splits[key].append(pair)
    return Splits(**splits)


def prompt_weights(pairs: Sequence[PreferencePair]) -> list[float]:
    """PickScore's example weights: 1 / (number of examples with this prompt)."""
    counts = Counter(p.prompt for p in pairs)
    return [1.0 / counts[p.prompt] for p in pairs]


def load_image(source: ImageSource) -> Image.Image:
    """A PIL RGB image from a path, encoded bytes, a PIL image or an HxWx3 uint8 array."""
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    if isinstance(source, np.ndarray):
        return Image.fromarray(source).convert("RGB")
    try:
        if isinstance(source, bytes | bytearray | memoryview):
            with Image.open(io.BytesIO(bytes(source))) as image:
                return image.convert("RGB")
        with Image.open(Path(source)) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as exc:
        name = f"{len(source)} bytes" if isinstance(source, bytes | bytearray | memoryview) else str(source)
        raise RewardDataError(f"cannot read image {name}: {exc}") from exc


def _image_key(source: ImageSource) -> Any:
    if isinstance(source, bytes | bytearray | memoryview):
        return ("bytes", hashlib.sha1(bytes(source)).hexdigest())  # noqa: S324 - a cache key, not security
    if isinstance(source, str | os.PathLike):
        return ("path", os.fspath(source))
    return ("object", id(source))


class PreferenceDataset(torch.utils.data.Dataset):
    """Pairs with their images preprocessed once (unique images cached as one pixel tensor) and prompts tokenized.

    ``dataset[i]`` is one example; ``dataset.__getitems__(indices)`` (used by ``DataLoader``) returns a whole
    batch dict of stacked tensors: input_ids, attention_mask, pixel_a, pixel_b, label_a, label_b, weight.
    ``weights`` default to :func:`prompt_weights` of these pairs.
    """

    def __init__(
        self, pairs: Sequence[PreferencePair], model: RewardModel, weights: Sequence[float] | None = None
    ) -> None:
        self.pairs = list(pairs)
        self.weights = weights
        self._build(model)

    def _build(self, model: RewardModel) -> None:
        image_index: dict[Any, int] = {}
        sources: list[ImageSource] = []
        a_index, b_index = [], []
        for pair in self.pairs:
            for source, out in ((pair.image_a, a_index), (pair.image_b, b_index)):
                key = _image_key(source)
                if key not in image_index:
                    image_index[key] = len(sources)
                    sources.append(source)
                out.append(image_index[key])
        self.pixels = model.preprocess_images([load_image(s) for s in sources])
        prompts = sorted({p.prompt for p in self.pairs})
        prompt_index = {p: i for i, p in enumerate(prompts)}
        tokens = model.tokenize(prompts) if prompts else {"input_ids": None, "attention_mask": None}
        self.input_ids, self.attention_mask = tokens["input_ids"], tokens["attention_mask"]
        self.prompts = prompts
        self.prompt_of = torch.tensor([prompt_index[p.prompt] for p in self.pairs], dtype=torch.long)
        self.image_a = torch.tensor(a_index, dtype=torch.long)
        self.image_b = torch.tensor(b_index, dtype=torch.long)
        self.label_a = torch.tensor([p.label_a for p in self.pairs], dtype=torch.float32)
        self.label_b = torch.tensor([p.label_b for p in self.pairs], dtype=torch.float32)
        weights = prompt_weights(self.pairs) if self.weights is None else list(self.weights)
        if len(weights) != len(self.pairs):
            raise RewardDataError(f"{len(weights)} weights for {len(self.pairs)} pairs")
        self.weight = torch.tensor(weights, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        prompt = self.prompt_of[index]
        return {
            "input_ids": self.input_ids[prompt],
            "attention_mask": self.attention_mask[prompt],
            "pixel_a": self.pixels[self.image_a[index]],
            "pixel_b": self.pixels[self.image_b[index]],
            "label_a": self.label_a[index],
            "label_b": self.label_b[index],
            "weight": self.weight[index],
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


def collate_batch(batch: Any) -> Any:
    """Collate for a ``DataLoader`` over :class:`PreferenceDataset`: batches come ready from ``__getitems__``."""
    if isinstance(batch, dict):
        return batch
    return torch.utils.data.default_collate(batch)
