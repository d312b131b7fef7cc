"""Small reward heads on frozen CLIP features: one scalar score per (prompt, image). No Django imports.

Every head takes the same inputs (see :class:`rewards.features`): the image's pooled embedding ``image`` (B, P),
its patch tokens ``patches`` (B, T, P) and the prompt's pooled embedding ``text`` (B, P), and returns (B,).

- ``linear``: a linear score of [image, image ⊙ text, cos(image, text)] (a linear probe).
- ``mlp``: an MLP on [image, text, image ⊙ text, cos] (as aesthetic predictors and ImageReward's head).
- ``attention``: prompt-conditioned attention pooling over the patch tokens: the text embedding makes a few
  queries, each pools the (layer-normed) patch tokens plus learned position codes, and an MLP reads the pooled
  vectors with the pooled image and text embeddings. It sees *where* and *what* in the image, not only the
  caption-aligned summary the pooled embedding keeps.

:class:`HeadEnsemble` holds M members of one kind and a temperature; its members' spread is an uncertainty.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "HEAD_KINDS",
    "AttentionHead",
    "HeadConfig",
    "HeadEnsemble",
    "LinearHead",
    "MLPHead",
    "build_head",
    "normalise_tokens",
]

HEAD_KINDS = ("linear", "mlp", "attention")


@dataclass(frozen=True)
class HeadConfig:
    """One head kind and how it trains (the fit is :func:`rewards.quick.fit_head_ensemble`)."""

    kind: str = "attention"
    hidden: int = 128  # MLP width
    queries: int = 4  # attention: queries made from the prompt
    position_dim: int = 16  # attention: width of the learned position codes read through the attention
    dropout: float = 0.1
    lr: float = 3e-3
    weight_decay: float = 1e-2
    steps: int = 300
    batch_size: int = 128

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {', '.join(HEAD_KINDS)} (got {self.kind!r})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HeadConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _cos(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    return (image * text).sum(-1, keepdim=True)


class LinearHead(nn.Module):
    """score = w · [image, image ⊙ text, cos(image, text)] + b."""

    uses = "pooled"

    def __init__(self, dim: int, tokens: int, config: HeadConfig) -> None:
        super().__init__()
        del tokens
        self.linear = nn.Linear(2 * dim + 1, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, image: torch.Tensor, patches: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        del patches
        return self.linear(torch.cat([image, image * text, _cos(image, text)], dim=-1))[:, 0]


def _mlp(width_in: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(width_in),
        nn.Linear(width_in, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden // 2),
        nn.GELU(),
        nn.Linear(hidden // 2, 1),
    )


class MLPHead(nn.Module):
    """An MLP on the pooled features: [image, text, image ⊙ text, cos]."""

    uses = "pooled"

    def __init__(self, dim: int, tokens: int, config: HeadConfig) -> None:
        super().__init__()
        del tokens
        self.mlp = _mlp(3 * dim + 1, config.hidden, config.dropout)

    def forward(self, image: torch.Tensor, patches: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        del patches
        return self.mlp(torch.cat([image, text, image * text, _cos(image, text)], dim=-1))[:, 0]


def normalise_tokens(patches: torch.Tensor) -> torch.Tensor:
    """Layer norm without affine parameters over each token (what :class:`AttentionHead` reads; fixed, so a fit
    computes it once for all steps and members)."""
    return nn.functional.layer_norm(patches, patches.shape[-1:])


class AttentionHead(nn.Module):
    """Prompt-conditioned attention pooling over the patch tokens, then an MLP.

    Queries q_h = W_h text + b_h (h = 1..queries) attend over the normed tokens x_t (plus learned position keys
    k_t: logit = q_h · (x_t + k_t) / √P); each query pools the normed tokens and learned position codes. A
    key/value projection would be linear and is folded into the query and the MLP. Cost per image:
    queries × T × P multiply-adds. Reads tokens normed by :func:`normalise_tokens` (``uses = "normed"``).
    """

    uses = "normed"

    def __init__(self, dim: int, tokens: int, config: HeadConfig) -> None:
        super().__init__()
        self.queries = config.queries
        self.query = nn.Linear(dim, dim * config.queries)
        self.position_key = nn.Parameter(torch.zeros(tokens, dim))
        self.position_value = nn.Parameter(torch.randn(tokens, config.position_dim) * 0.02)
        nn.init.normal_(self.query.weight, std=0.02)
        nn.init.zeros_(self.query.bias)
        pooled_width = config.queries * (dim + config.position_dim)
        self.mlp = _mlp(pooled_width + 2 * dim + 1, config.hidden, config.dropout)

    def pool(self, tokens: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled vectors (B, queries × (P + position_dim)) and the attention weights (B, queries, T)."""
        batch, _, dim = tokens.shape
        query = self.query(text).view(batch, self.queries, dim)
        logits = torch.bmm(query, tokens.transpose(1, 2)) + query @ self.position_key.T
        weights = (logits / math.sqrt(dim)).softmax(dim=-1)
        pooled = torch.bmm(weights, tokens)
        where = weights @ self.position_value
        return torch.cat([pooled, where], dim=-1).flatten(1), weights

    def forward(self, image: torch.Tensor, patches: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        pooled, _ = self.pool(patches, text)
        return self.mlp(torch.cat([pooled, image, text, _cos(image, text)], dim=-1))[:, 0]


_HEADS: dict[str, type[nn.Module]] = {"linear": LinearHead, "mlp": MLPHead, "attention": AttentionHead}


def build_head(config: HeadConfig, dim: int, tokens: int) -> nn.Module:
    """A fresh head of ``config.kind`` for P = ``dim`` features and T = ``tokens`` image tokens."""
    return _HEADS[config.kind](dim, tokens, config)


class HeadEnsemble(nn.Module):
    """M heads of one kind and a temperature: member scores (M, B); the score is their mean over temperature."""

    def __init__(self, config: HeadConfig, dim: int, tokens: int, size: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"an ensemble needs at least one member (got {size})")
        self.config, self.dim, self.tokens = config, dim, tokens
        self.members = nn.ModuleList(build_head(config, dim, tokens) for _ in range(size))
        self.register_buffer("temperature", torch.ones(()))

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def uses(self) -> str:
        """What the members read of the patch tokens: "pooled" (nothing) or "normed" (:func:`normalise_tokens`)."""
        return self.members[0].uses

    def prepare(self, patches: torch.Tensor) -> torch.Tensor:
        """The patch tokens as the members read them (pass the result to ``member_scores(..., prepared=True)``)."""
        return normalise_tokens(patches) if self.uses == "normed" else patches[:, :0]

    def member_scores(
        self, image: torch.Tensor, patches: torch.Tensor, text: torch.Tensor, *, prepared: bool = False
    ) -> torch.Tensor:
        """(M, B) raw scores of each member (not divided by the temperature)."""
        tokens = patches if prepared else self.prepare(patches)
        return torch.stack([member(image, tokens, text) for member in self.members])

    def forward(self, image: torch.Tensor, patches: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(B,) the ensemble's score: the members' mean score divided by the temperature."""
        return self.member_scores(image, patches, text).mean(0) / self.temperature

    def describe(self) -> dict[str, Any]:
        """What ``reward_config.json`` stores to rebuild it (weights are saved separately)."""
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
