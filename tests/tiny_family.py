"""A family from outside ``artrain.models``, as a user would write one: a decaying sum of token embeddings,
h_t = DECAY * h_{t-1} + E[x_{t-1}] (the start symbol at t = 0), logits_t = W h_t. Its state is the one (B, D)
vector h; its parallel ``forward`` is the same sum as a (T, T) lower-triangular matrix of decay powers.

Imported by name (``tiny_family:Decay``) from the tests folder, which pytest puts on ``sys.path``."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from arrun.contract.schema import StateSpec
from artrain.models import ARModel
from artrain.models.base import shift_right

DECAY = 0.5


@dataclass(frozen=True)
class DecayConfig:
    vocab_size: int = 11
    num_classes: int = 0
    dim: int = 8


class Decay(ARModel):
    family = "decay"
    Config = DecayConfig
    uses_position = False  # the step reads only its token and h

    def __init__(self, config: DecayConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size + 1, config.dim)  # + the start symbol
        self.head = nn.Linear(config.dim, config.vocab_size)

    def state_spec(self) -> tuple[StateSpec, ...]:
        return (StateSpec("h", (self.config.dim,), "float32", 0.0),)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        e = self.embed(shift_right(x, self.config.vocab_size))  # (B, T, D)
        t = torch.arange(x.shape[1], device=x.device)
        lag = t[:, None] - t[None, :]  # (T, T) t - s
        weights = torch.where(lag >= 0, DECAY ** lag.clamp(min=0).float(), 0.0)  # (T, T)
        return self.head(weights @ e)  # (B, T, V)

    def step(self, token, pos, state, cond=None):
        """token (B,), pos (B,) int64 (unread: each row's h carries its history) -> logits (B, V), {h (B, D)}."""
        h = DECAY * state["h"] + self.embed(token)  # (B, D)
        return self.head(h), {"h": h}
