"""Small reward heads on frozen CLIP features: one scalar score per (prompt, image). No Django imports.

Every head reads the same standardised inputs (:class:`HeadInputs`, made by :class:`HeadEnsemble` from the
backbone features of :mod:`rewards.features`): the image's pooled embedding, its patch tokens, the prompt's pooled
embedding and the zero-shot cos(image, prompt); it returns one score per row.

- ``linear``: a linear score of [image, image ⊙ text, cos] (a Bradley-Terry linear probe).
- ``mlp``: an MLP on [image, text, image ⊙ text, cos] (as aesthetic predictors and ImageReward's head).
- ``patch_linear``: a linear map of every patch token at its own place, plus ``linear`` (the flattened-token
  probe): a preference for where things are, or for local content, is linear there and not in the pooled vector.
- ``patch_mlp``: a small MLP on every token with its position and the prompt, averaged, plus ``mlp``.
- ``patch_set``: the same per-token features, averaged first and then read by an MLP with the pooled features
  (DeepSets): a preference that is not monotone in how much of something there is.
- ``attention``: prompt-conditioned attention pooling over the patch tokens: the text embedding makes a few
  queries, each pools the tokens, their fixed coordinates and learned position codes; linear + MLP on top.

:class:`HeadEnsemble` holds M members of one kind, the input standardisation and a temperature; the members'
spread is an uncertainty.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import DEFAULT_HEAD, HEAD_DEFAULTS, HEAD_KINDS

__all__ = [
    "HEAD_KINDS",
    "AttentionHead",
    "HeadConfig",
    "HeadEnsemble",
    "LinearHead",
    "MLPHead",
    "HeadInputs",
    "PatchLinearHead",
    "PatchMLPHead",
    "build_head",
]


@dataclass(frozen=True)
class HeadConfig:
    """One head kind and how it trains (the fit is :func:`rewards.quick.fit_head_ensemble`)."""

    kind: str = DEFAULT_HEAD
    hidden: int = HEAD_DEFAULTS["hidden"]  # MLP width
    queries: int = 4  # attention: queries made from the prompt
    position_dim: int = 16  # attention: width of the learned position codes read through the attention
    rank: int = 0  # patch_linear: 0 a weight per token and dimension; r > 0 a sum of r (where × what) products
    dropout: float = HEAD_DEFAULTS["dropout"]
    lr: float = HEAD_DEFAULTS["lr"]
    weight_decay: float = HEAD_DEFAULTS["weight_decay"]
    steps: int = HEAD_DEFAULTS["steps"]
    batch_size: int = HEAD_DEFAULTS["batch_size"]

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {', '.join(HEAD_KINDS)} (got {self.kind!r})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HeadConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class HeadInputs:
    """A batch as the heads read it, standardised by the ensemble (:meth:`HeadEnsemble.inputs`): ``image``
    (B, P), ``tokens`` (B, T, P) (empty (B, 0, P) for heads that do not read them), ``text`` (B, P) and ``cos``
    (B, 1), the zero-shot cos(image, text)."""

    image: torch.Tensor
    tokens: torch.Tensor
    text: torch.Tensor
    cos: torch.Tensor


class LinearHead(nn.Module):
    """score = w · [image, image ⊙ text, cos] + b (a Bradley-Terry linear probe on standardised features)."""

    uses_tokens = False

    def __init__(self, dim: int, tokens: int, config: HeadConfig) -> None:
        super().__init__()
        del tokens, config
        self.linear = nn.Linear(2 * dim + 1, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: HeadInputs) -> torch.Tensor:
        return self.linear(torch.cat([x.image, x.image * x.text, x.cos], dim=-1))[:, 0]


class PatchLinearHead(nn.Module):
    """score = Σ_t w_t · x_t + w · [image, image ⊙ text, cos]: a linear map of every patch token at its own
    place (the flattened-token linear probe) plus the pooled linear head."""

    uses_tokens = True

    def __init__(self, dim: int, tokens: int, config: HeadConfig) -> None:
        super().__init__()
        self.rank = config.rank
        if self.rank:
            self.where = nn.Parameter(torch.zeros(tokens, self.rank))
            self.what = nn.Parameter(torch.randn(dim, self.rank) / math.sqrt(dim))
        else:
            self.weight = nn.Parameter(torch.zeros(tokens, dim))
        self.pooled = LinearHead(dim, tokens, config)

    def forward(self, x: HeadInputs) -> torch.Tensor:
        weight = self.what @ self.where.T if self.rank else self.weight.T  # (P, T)
        local = (x.tokens * weight.T).sum((1, 2))
        return local / math.sqrt(x.tokens.shape[1]) + self.pooled(x)


def _mlp(width_in: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(width_in, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden // 2),
        nn.GELU(),
        nn.Linear(hidden // 2, 1),
    )


class MLPHead(nn.Module):
    """An MLP on the pooled features: [image, text, image ⊙ text, cos]."""

    uses_tokens = False

    def __init__(self, dim: int, tokens: int, config: HeadConfig) -> None:
        super().__init__()
        del tokens
        self.mlp = _mlp(3 * dim + 1, config.hidden, config.dropout)

    def forward(self, x: HeadInputs) -> torch.Tensor:
        return self.mlp(torch.cat([x.image, x.text, x.image * x.text, x.cos], dim=-1))[:, 0]


COORDINATES = 6  # per token: is-class-token, x, y, x², y², x·y (patch centres in [-1, 1]; 0 for the class token)


def patch_coordinates(tokens: int) -> torch.Tensor:
    """(T, 6) fixed coordinates of the tokens: the class token first, then a square grid of patches row by row
    (a T that is not 1 + a square gets the class-token flag only)."""
    coordinates = torch.zeros(tokens, COORDINATES)
    coordinates[0, 0] = 1.0
    side = math.isqrt(tokens - 1)
    if side * side != tokens - 1 or side < 1:
        return coordinates
    centres = (torch.arange(side, dtype=torch.float32) + 0.5) / side * 2.0 - 1.0
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    x, y = x.flatten(), y.flatten()
    coordinates[1:, 1:] = torch.stack([x, y, x * x, y * y, x * y], dim=-1)
    return coordinates


class AttentionHead(nn.Module):
    """Prompt-conditioned attention pooling over the patch tokens, then an MLP.

    Queries q_h = W_h text + b_h (h = 1..queries) attend over the tokens x_t plus learned position keys k_t
    (logit = q_h · (x_t + k_t) / √P); each query pools the tokens, their fixed coordinates
    (:func:`patch_coordinates`: where the attended content is, and how spread) and learned position codes; an MLP
    reads the pooled vectors with the pooled image and text features. A key/value projection would be linear
    and is folded into the query and the MLP. Cost per image: queries × T × P multiply-adds.
    """

    uses_tokens = True

    def __init__(self, dim: int, tokens: int, config: HeadConfig) -> None:
        super().__init__()
        self.queries = config.queries
        self.query = nn.Linear(dim, dim * config.queries)
        self.position_key = nn.Parameter(torch.zeros(tokens, dim))
        self.position_value = nn.Parameter(torch.randn(tokens, config.position_dim) * 0.02)
        nn.init.normal_(self.query.weight, std=0.02)
        nn.init.zeros_(self.query.bias)
        self.register_buffer("coordinates", patch_coordinates(tokens), persistent=False)
        pooled_width = config.queries * (dim + config.position_dim + COORDINATES)
        self.linear = nn.Linear(pooled_width + 2 * dim + 1, 1)
        nn.init.zeros_(self.linear.weight)
        self.mlp = _mlp(pooled_width + 2 * dim + 1, config.hidden, config.dropout)

    def pool(self, tokens: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled vectors (B, queries × (P + 6 + position_dim)) and the attention weights (B, queries, T)."""
        batch, _, dim = tokens.shape
        query = self.query(text).view(batch, self.queries, dim)
        logits = torch.bmm(query, tokens.transpose(1, 2)) + query @ self.position_key.T
        weights = (logits / math.sqrt(dim)).softmax(dim=-1)
        pooled = torch.bmm(weights, tokens)
        where = torch.cat([weights @ self.coordinates, weights @ self.position_value], dim=-1)
        return torch.cat([pooled, where], dim=-1).flatten(1), weights

    def forward(self, x: HeadInputs) -> torch.Tensor:
        pooled, _ = self.pool(x.tokens, x.text)
        features = torch.cat([pooled, x.image, x.text, x.cos], dim=-1)
        return (self.linear(features) + self.mlp(features))[:, 0]


class _TokenFeatures(nn.Module):
    """The per-token features that :class:`PatchMLPHead` and :class:`PatchSetHead` read: W x_t + p_t + U text for
    the token x_t and a position code p_t (a linear map of the token's fixed coordinates,
    :func:`patch_coordinates`, plus a learned code), ``width`` wide, before the activation."""

    uses_tokens = True

    def __init__(self, dim: int, tokens: int, width: int) -> None:
        super().__init__()
        self.token = nn.Linear(dim, width)
        self.prompt = nn.Linear(dim, width, bias=False)
        self.where = nn.Linear(COORDINATES, width, bias=False)
        self.register_buffer("coordinates", patch_coordinates(tokens), persistent=False)
        self.position = nn.Parameter(torch.zeros(tokens, width))

    def token_features(self, x: HeadInputs) -> torch.Tensor:
        """(B, T, width) pre-activation features of every token."""
        position = self.where(self.coordinates) + self.position
        return self.token(x.tokens) + position + self.prompt(x.text)[:, None, :]


def _token_width(config: HeadConfig) -> int:
    return max(8, config.hidden // 4)


class PatchMLPHead(_TokenFeatures):
    """A small MLP on every patch token (with its position and the prompt), averaged, plus a pooled MLP.

    h_t = GELU(W x_t + p_t + U text) (:class:`_TokenFeatures`); the score is
    mean_t v · h_t + mlp(image, text, image ⊙ text, cos). A preference for where the content is (position),
    how it looks locally (colour, edges) or how much of it there is (area) is a sum over patches, which this
    head reads directly. Cost per image: T × P × hidden / 4 multiply-adds.
    """

    def __init__(self, dim: int, tokens: int, config: HeadConfig) -> None:
        width = _token_width(config)
        super().__init__(dim, tokens, width)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(width, 1)
        nn.init.zeros_(self.out.weight)
        self.pooled = MLPHead(dim, tokens, config)

    def forward(self, x: HeadInputs) -> torch.Tensor:
        hidden = nn.functional.gelu(self.token_features(x))
        local = self.out(self.dropout(hidden))[..., 0].mean(-1)
        return local + self.pooled(x)


class PatchSetHead(_TokenFeatures):
    """An MLP on the mean of per-token features (a DeepSets pooling), with the pooled image and text features.

    h_t = GELU(W x_t + p_t + U text) as in :class:`PatchMLPHead`, but the MLP reads mean_t h_t rather than
    averaging per-token scores: a preference that is not monotone in how much of something there is ("a fifth of
    the frame", "not too busy") needs the nonlinearity after the sum over patches, which this head has.
    """

    def __init__(self, dim: int, tokens: int, config: HeadConfig) -> None:
        width = _token_width(config)
        super().__init__(dim, tokens, width)
        self.mlp = _mlp(width + 3 * dim + 1, config.hidden, config.dropout)

    def forward(self, x: HeadInputs) -> torch.Tensor:
        hidden = nn.functional.gelu(self.token_features(x))
        features = torch.cat([hidden.mean(1), x.image, x.text, x.image * x.text, x.cos], dim=-1)
        return self.mlp(features)[:, 0]


_HEADS: dict[str, type[nn.Module]] = {
    "linear": LinearHead,
    "mlp": MLPHead,
    "attention": AttentionHead,
    "patch_mlp": PatchMLPHead,
    "patch_linear": PatchLinearHead,
    "patch_set": PatchSetHead,
}


def build_head(config: HeadConfig, dim: int, tokens: int) -> nn.Module:
    """A fresh head of ``config.kind`` for P = ``dim`` features and T = ``tokens`` image tokens."""
    return _HEADS[config.kind](dim, tokens, config)


_EPS = 1e-6


class HeadEnsemble(nn.Module):
    """M heads of one kind, the feature standardisation they share, and a temperature.

    Inputs are standardised with statistics of the training images and prompts (:meth:`fit_standardisation`),
    per dimension (the same for every patch token): images of one prompt differ little in the backbone's
    unit-length embeddings, and a head learns from those small differences far faster once they are on a unit
    scale. The statistics are buffers, saved with the weights.
    """

    def __init__(self, config: HeadConfig, dim: int, tokens: int, size: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"an ensemble needs at least one member (got {size})")
        self.config, self.dim, self.tokens = config, dim, tokens
        self.members = nn.ModuleList(build_head(config, dim, tokens) for _ in range(size))
        self.register_buffer("temperature", torch.ones(()))
        for name, shape in (("image", (dim,)), ("token", (tokens, dim)), ("text", (dim,)), ("cos", ())):
            self.register_buffer(f"{name}_mean", torch.zeros(shape))
            self.register_buffer(f"{name}_scale", torch.ones(shape))

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def uses_tokens(self) -> bool:
        return bool(self.members[0].uses_tokens)

    @torch.no_grad()
    def fit_standardisation(
        self, image: torch.Tensor, patches: torch.Tensor, text: torch.Tensor, cos: torch.Tensor
    ) -> None:
        """Means and standard deviations of (unique) training images (pooled, tokens), prompts and pair cosines."""
        tokens = patches.float().flatten(0, 1)  # one statistic per dimension, shared by every position
        for name, values in (("image", image), ("token", tokens), ("text", text), ("cos", cos)):
            values = values.float()
            mean = getattr(self, f"{name}_mean")
            mean.copy_(values.mean(0).expand_as(mean))
            scale = values.std(0) if len(values) > 1 else torch.ones_like(values[0])
            getattr(self, f"{name}_scale").copy_(scale.clamp_min(_EPS).expand_as(mean))

    def standard_images(self, image: torch.Tensor, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised pooled image features and tokens (an empty token axis for heads that do not read them)."""
        image = (image - self.image_mean) / self.image_scale
        if not self.uses_tokens:
            return image, patches[:, :0]
        return image, (patches - self.token_mean) / self.token_scale

    def standard_text(self, text: torch.Tensor) -> torch.Tensor:
        return (text - self.text_mean) / self.text_scale

    def standard_cos(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The zero-shot cos(image, text) of raw (unit-length) embeddings, standardised, as (B, 1)."""
        return (((image * text).sum(-1) - self.cos_mean) / self.cos_scale)[:, None]

    def inputs(self, image: torch.Tensor, patches: torch.Tensor, text: torch.Tensor) -> HeadInputs:
        """Raw backbone features of a batch (one prompt per image) → what the heads read."""
        standard_image, tokens = self.standard_images(image, patches)
        return HeadInputs(standard_image, tokens, self.standard_text(text), self.standard_cos(image, text))

    def member_scores(self, inputs: HeadInputs) -> torch.Tensor:
        """(M, B) raw scores of each member (not divided by the temperature)."""
        return torch.stack([member(inputs) for member in self.members])

    def forward(self, image: torch.Tensor, patches: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(B,) the ensemble's score of raw features: the members' mean score divided by the temperature."""
        return self.member_scores(self.inputs(image, patches, text)).mean(0) / self.temperature

    def describe(self) -> dict[str, Any]:
        """What ``reward_config.json`` stores to rebuild it (weights and statistics are saved separately)."""
        return {
            "config": self.config.to_dict(),
            "dim": self.dim,
            "tokens": self.tokens,
            "size": self.size,
            "temperature": float(self.temperature),
        }

    @classmethod
    def from_description(cls, described: Mapping[str, Any]) -> HeadEnsemble:
        ensemble = cls(
            HeadConfig.from_dict(described["config"]),
            int(described["dim"]),
            int(described["tokens"]),
            int(described["size"]),
        )
        ensemble.temperature.fill_(float(described.get("temperature", 1.0)))
        return ensemble
