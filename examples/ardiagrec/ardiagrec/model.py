"""A stack of diagonal linear recurrences (an LRU / S4D-style state-space model with a real diagonal), an
artrain family that lives outside the artrain repository.

Each layer mixes over time with a linear recurrence of constant-size state and over channels with a gated
MLP, both pre-LayerNorm residual branches (D = ``d_model``, N = ``d_state``):

    b_t = sqrt(1 - a^2) * W_in LN(x_t)          (N,)  the input, scaled so h stays of b's size
    h_t = a * h_{t-1} + b_t,  h_{-1} = 0        (N,)  a in (0, A_MAX), one decay per state channel
    x_t <- x_t + W_out h_t
    x_t <- x_t + W_down(silu(W_gate LN(x_t)) * W_up LN(x_t))

over the embedding of the previous element (the start symbol ``vocab_size`` at t = 0) plus a class
embedding when the model is conditional; LayerNorm and a linear head give the logits.

``forward`` computes every position at once with ``linear_scan`` (Hillis-Steele: level l adds the sum
shifted by 2^l, weighted by a^(2^l)); every operation multiplies by numbers in [0, 1) or adds, so it is
stable in float32 at any length. ``step`` advances one element from the explicit state ``h.{i}`` (B, N)
per layer. The recurrence never reads the position, and every prediction depends on all of the past
(``receptive_field`` 0, ``max_length`` 0: unbounded), so sequences are scored whole.

The exported full graph runs ``EXPORT_LEVELS`` levels (lags up to 2^16 - 1): an older term weighs at most
A_MAX^65536 < 1e-14, far below float32's resolution, so it agrees with the step rollout at any length.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from arrun.contract.schema import StateSpec
from artrain.models import ARModel

A_MAX = 0.9995          # the slowest decay: a memory of ~2,000 elements
TIMESCALES = (1.0, 1000.0)  # initial decays a = exp(-1 / tau), tau log-spaced over this range
EXPORT_LEVELS = 16      # scan levels of a traced graph, whose length is not known when tracing


@dataclass(frozen=True)
class DiagonalRecurrenceConfig:
    vocab_size: int = 256
    num_classes: int = 0       # class ids added as an embedding at every position (0: unconditional)
    layers: int = 4
    d_model: int = 128         # D: channels between layers
    d_state: int = 128         # N: recurrence channels per layer (the state is layers x N floats)
    mlp: int = 256             # hidden width of the gated MLP
    dropout: float = 0.0


def scan_levels(length: int) -> int:
    """Levels of ``linear_scan`` that reach every lag of a sequence of ``length``: 2^levels >= length."""
    return max(length - 1, 0).bit_length()


def linear_scan(a: torch.Tensor, b: torch.Tensor, levels: int) -> torch.Tensor:
    """h_t = a * h_{t-1} + b_t from h_{-1} = 0, every t at once: a (N,) in [0, 1), b (B, T, N) -> h (B, T, N).
    After level l, h_t sums a^j b_{t-j} over the lags j < 2^(l+1); lags of 2^levels and more are left out."""
    t = torch.arange(b.shape[1], device=b.device)  # (T,)
    h, power = b, a
    for level in range(levels):
        lag = 1 << level
        weight = power * (t >= lag).unsqueeze(-1)  # (T, N) a^lag, 0 where t - lag is before the start
        h = torch.addcmul(h, weight, h.index_select(1, (t - lag).clamp(min=0)))  # (B, T, N) + a^lag h_{t-lag}
        power = power * power  # a^(2^(level+1))
    return h


class RecurrentBlock(nn.Module):
    def __init__(self, c: DiagonalRecurrenceConfig):
        super().__init__()
        self.norm_time = nn.LayerNorm(c.d_model)
        self.w_in = nn.Linear(c.d_model, c.d_state, bias=False)
        self.w_out = nn.Linear(c.d_state, c.d_model)
        tau = torch.logspace(*(math.log10(s) for s in TIMESCALES), c.d_state)  # (N,)
        self.decay_logit = nn.Parameter(torch.logit(torch.exp(-1 / tau).clamp(max=0.999 * A_MAX) / A_MAX))
        self.norm_channels = nn.LayerNorm(c.d_model)
        self.w_gate_up = nn.Linear(c.d_model, 2 * c.mlp)
        self.w_down = nn.Linear(c.mlp, c.d_model)
        self.drop = nn.Dropout(c.dropout)

    def decay(self) -> torch.Tensor:
        return A_MAX * torch.sigmoid(self.decay_logit)  # (N,) in (0, A_MAX)

    def drive(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """x (..., D) -> b (..., N), the recurrence's input."""
        return self.w_in(self.norm_time(x)) * torch.sqrt(1 - a * a)

    def mix(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x (..., D), h (..., N) -> the block's output (..., D): the recurrence's read-out, then the gated MLP."""
        x = x + self.drop(self.w_out(h))
        gate, up = self.w_gate_up(self.norm_channels(x)).chunk(2, dim=-1)  # (..., mlp) each
        return x + self.drop(self.w_down(F.silu(gate) * up))

    def forward(self, x: torch.Tensor, levels: int) -> torch.Tensor:
        """x (B, T, D) -> (B, T, D)."""
        a = self.decay()
        return self.mix(x, linear_scan(a, self.drive(x, a), levels))

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, D), h (B, N) the state after the previous element -> (output (B, D), new state (B, N))."""
        a = self.decay()
        h = a * h + self.drive(x, a)
        return self.mix(x, h), h


class DiagonalRecurrence(ARModel):
    family = "diagrec"
    Config = DiagonalRecurrenceConfig
    uses_position = False
    training_defaults = {
        "image": dict(steps=500, batch_size=64, lr=3e-3, eval_every=100,
                      model=dict(layers=3, d_model=64, d_state=64, mlp=128)),
        "text": dict(steps=2000, batch_size=32, seq_len=256, lr=3e-3,
                     model=dict(layers=4, d_model=128, d_state=128, mlp=256, dropout=0.1)),
        "audio": dict(steps=1500, batch_size=8, seq_len=2048, lr=2e-3,
                      model=dict(layers=4, d_model=64, d_state=64, mlp=128)),
    }

    def __init__(self, config: DiagonalRecurrenceConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size + 1, c.d_model)  # last id: the start symbol
        self.class_embed = nn.Embedding(c.num_classes, c.d_model) if c.num_classes else None
        self.blocks = nn.ModuleList(RecurrentBlock(c) for _ in range(c.layers))
        self.norm_out = nn.LayerNorm(c.d_model)
        self.to_logits = nn.Linear(c.d_model, c.vocab_size)

    def state_spec(self) -> tuple[StateSpec, ...]:
        return tuple(StateSpec(f"h.{i}", (self.config.d_state,)) for i in range(self.config.layers))

    def _embed(self, tokens: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """tokens (B, ...) -> (B, ..., D), the class embedding added at every element."""
        x = self.embed(tokens)
        if self.class_embed is not None:
            c = self.class_embed(cond)  # (B, D)
            x = x + c.view(c.shape[0], *[1] * (x.dim() - 2), -1)
        return x

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T) int64, any T -> logits (B, T, V); logits[:, t] predicts x_t from x_<t."""
        start = torch.full_like(x[:, :1], self.config.vocab_size)
        h = self._embed(torch.cat([start, x[:, :-1]], dim=1), cond)  # (B, T, D) the previous elements
        levels = EXPORT_LEVELS if torch.compiler.is_compiling() else scan_levels(x.shape[1])
        for block in self.blocks:
            h = block(h, levels)
        return self.to_logits(self.norm_out(h))

    def step(self, token, pos, state, cond=None):
        """token (B,) int64 x_{t-1} (the start symbol at t = 0); pos unused; state {"h.{i}": (B, N)}
        -> (logits (B, V) of x_t, the state after x_{t-1})."""
        x = self._embed(token, cond)  # (B, D)
        new_state = {}
        for i, block in enumerate(self.blocks):
            x, new_state[f"h.{i}"] = block.step(x, state[f"h.{i}"])
        return self.to_logits(self.norm_out(x)), new_state
