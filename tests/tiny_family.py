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


@dataclass(frozen=True)
class RingConfig:
    vocab_size: int = 11
    num_classes: int = 0
    dim: int = 8
    span: int = 5  # elements the sum covers: the ring's slots


class Ring(ARModel):
    """A moving sum over the last ``span`` token embeddings, h_t = sum_{k<span} E[x_{t-1-k}], logits_t = W h_t,
    kept in a ring buffer (B, span, D) written one slot per step (pos % span) by a scatter into the state as
    given and read after the write: a state arexport proves safe to update in place."""
    family = "ring"
    Config = RingConfig

    def __init__(self, config: RingConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size + 1, config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size)

    @property
    def state_period(self) -> int:
        return self.config.span

    def state_spec(self) -> tuple[StateSpec, ...]:
        return (StateSpec("ring", (self.config.span, self.config.dim), "float32", 0.0),)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        e = self.embed(shift_right(x, self.config.vocab_size))  # (B, T, D)
        t = torch.arange(x.shape[1], device=x.device)
        lag = t[:, None] - t[None, :]  # (T, T)
        weights = ((lag >= 0) & (lag < self.config.span)).float()  # (T, T)
        return self.head(weights @ e)  # (B, T, V)

    def step(self, token, pos, state, cond=None):
        """token (B,), pos (B,) int64 -> logits (B, V), {ring (B, span, D)}: row b writes slot pos[b] % span."""
        B, D = token.shape[0], self.config.dim
        slot = (pos % self.config.span).view(B, 1, 1).expand(B, 1, D)  # (B, 1, D)
        ring = self.read_before_write(state["ring"]).scatter(1, slot, self.embed(token)[:, None])  # (B, span, D)
        return self.head(self.products(state["ring"], ring)), {"ring": ring}

    def read_before_write(self, ring: torch.Tensor) -> torch.Tensor:
        return ring

    def products(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        return new.sum(1)  # (B, D): read after the write


class RingReadLate(Ring):
    """The same sum, computed as old ring - the slot it replaces + the new element: a read of the old ring that
    the write does not depend on, so a runtime could run it after the write (not in place)."""
    family = "ring_read_late"

    def products(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        return old.sum(1) + (new - old).sum(1)  # (B, D)
