"""WaveNet (van den Oord et al. 2016) with the Fast WaveNet step (Paine et al. 2016).

Stacks of dilated causal convolutions (kernel 2, dilations 1, 2, ..., 2^(k-1), repeated), gated
tanh * sigmoid units, residual and skip connections, a 1x1 output head, a categorical output, and
optional global conditioning on a class id. Activations are kept channel-last, (B, T, C), so the
dilated convolution is one matrix product over [x_{t-d}, x_t] in both ``forward`` and ``step``.

Step state: one queue per layer, ``queue.{i}`` of shape (B, d_i, C): the layer's inputs at
t - d_i .. t - 1, oldest first. A step reads the oldest entry, appends the newest and drops the oldest,
so a sample costs O(layers) work whatever the receptive field.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from arrun.contract.schema import StateSpec

from .base import ARModel, gate, shift_right


@dataclass(frozen=True)
class WaveNetConfig:
    vocab_size: int = 256            # categorical output levels (256 mu-law codes for audio)
    num_classes: int = 0             # global condition ids (0: unconditional)
    stacks: int = 2
    layers_per_stack: int = 10       # dilations 1 .. 2^(layers_per_stack - 1) in each stack
    residual_channels: int = 64
    skip_channels: int = 128

    @property
    def dilations(self) -> list[int]:
        return [2**i for i in range(self.layers_per_stack)] * self.stacks

    @property
    def receptive_field(self) -> int:
        """Number of past elements the logits at t can see: x_{t-R} .. x_{t-1}."""
        return sum(self.dilations) + 1


class ResidualLayer(nn.Module):
    """One dilated gated layer: residual output for the next layer, skip output for the head."""

    def __init__(self, channels: int, skip_channels: int, dilation: int, num_classes: int):
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Linear(2 * channels, 2 * channels)  # taps [x_{t-d}, x_t] -> filter|gate
        self.cond = nn.Embedding(num_classes, 2 * channels) if num_classes else None
        self.residual = nn.Linear(channels, channels)
        self.skip = nn.Linear(channels, skip_channels)

    def _gated(self, taps: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        a = self.conv(taps)  # (..., 2C)
        if self.cond is not None:
            bias = self.cond(cond)  # (B, 2C)
            a = a + (bias[:, None] if a.dim() == 3 else bias)
        return gate(a, dim=-1)  # (..., C)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        past = F.pad(x, (0, 0, self.dilation, 0))[:, : x.shape[1]]  # (B, T, C): x_{t-d}, zeros before 0
        z = self._gated(torch.cat([past, x], dim=-1), cond)  # (B, T, C)
        return x + self.residual(z), self.skip(z)

    def step(self, x: torch.Tensor, queue: torch.Tensor, cond: torch.Tensor | None):
        """x (B, C) input at t, queue (B, d, C) inputs at t-d..t-1 -> (out (B, C), skip (B, S), new queue)."""
        z = self._gated(torch.cat([queue[:, 0], x], dim=-1), cond)  # (B, C)
        new_queue = torch.cat([queue[:, 1:], x[:, None]], dim=1)  # (B, d, C)
        return x + self.residual(z), self.skip(z), new_queue


class WaveNet(ARModel):
    family = "wavenet"
    Config = WaveNetConfig
    uses_position = False  # the queues carry time
    training_defaults = {
        "image": dict(steps=300, batch_size=64, lr=2e-3, eval_every=100,
                      model=dict(stacks=2, layers_per_stack=6, residual_channels=32, skip_channels=64)),
        "text": dict(steps=2000, batch_size=16, seq_len=256, lr=2e-3,
                     model=dict(stacks=1, layers_per_stack=8, residual_channels=64, skip_channels=128)),
        "audio": dict(steps=1500, batch_size=8, seq_len=2048, lr=2e-3,
                      model=dict(stacks=2, layers_per_stack=9, residual_channels=32, skip_channels=64)),
    }

    def __init__(self, config: WaveNetConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size + 1, c.residual_channels)  # last id: start symbol
        self.layers = nn.ModuleList(
            ResidualLayer(c.residual_channels, c.skip_channels, d, c.num_classes) for d in c.dilations
        )
        self.head = nn.Sequential(
            nn.ReLU(), nn.Linear(c.skip_channels, c.skip_channels), nn.ReLU(), nn.Linear(c.skip_channels, c.vocab_size)
        )

    def state_spec(self) -> tuple[StateSpec, ...]:
        c = self.config
        return tuple(StateSpec(f"queue.{i}", (d, c.residual_channels)) for i, d in enumerate(c.dilations))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T) int64 levels -> logits (B, T, V); logits[:, t] predicts x_t from x_<t."""
        h = self.embed(shift_right(x, self.config.vocab_size))  # (B, T, C)
        skip = 0
        for layer in self.layers:
            h, s = layer(h, cond)  # (B, T, C), (B, T, S)
            skip = skip + s
        return self.head(skip)  # (B, T, V)

    def step(self, token, pos, state, cond=None):
        """token (B,) x_{pos-1} or the start symbol; pos unused (the queues carry time)."""
        h = self.embed(token)  # (B, C)
        skip = 0
        new_state = {}
        for i, layer in enumerate(self.layers):
            h, s, new_state[f"queue.{i}"] = layer.step(h, state[f"queue.{i}"], cond)
            skip = skip + s
        return self.head(skip), new_state
