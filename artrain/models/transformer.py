"""Decoder-only Transformer (Vaswani et al. 2017): pre-LayerNorm blocks, causal multi-head
self-attention, learned positions, a fixed maximum context and optional class conditioning.

Step state: a fixed-capacity key/value cache per layer, ``past_key_values.{i}.key`` and
``past_key_values.{i}.value``, each (B, heads, max_len, head_dim). A step writes the new key and value
at ``pos`` and attends over positions <= pos (later slots are masked). Past the maximum context there is
no sliding window: ``forward`` with T > max_len and ``step`` with pos >= max_len raise ValueError, and
runtimes must stop at max_len (the exported graph carries max_len in its metadata).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from arrun.contract.schema import StateSpec

from .base import ARModel, shift_right


@dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int = 256
    num_classes: int = 0       # class ids added as an embedding at every position (0: unconditional)
    max_len: int = 256         # maximum context, start symbol included
    layers: int = 4
    d_model: int = 256
    heads: int = 4
    dropout: float = 0.0

    def __post_init__(self):
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")


class SelfAttention(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.heads = c.heads
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
        self.proj = nn.Linear(c.d_model, c.d_model)
        self.dropout = c.dropout

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)  # 3 x (B, T, D)
        return tuple(t.view(B, T, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self._split(x)  # (B, nh, T, hd)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))

    def step(self, x, pos, past_key, past_value):
        """x (B, 1, D) at pos; past caches (B, nh, L, hd) -> (y (B, 1, D), present key, present value)."""
        B, _, D = x.shape
        hd = D // self.heads
        q, k, v = self._split(x)  # (B, nh, 1, hd)
        at = pos.view(1, 1, 1, 1).expand(B, self.heads, 1, hd)
        key, value = past_key.scatter(2, at, k), past_value.scatter(2, at, v)  # (B, nh, L, hd), written at pos
        slots = torch.arange(past_key.shape[2], device=x.device)  # (L,)
        att = (q * hd**-0.5) @ key.transpose(-2, -1)  # (B, nh, 1, L)
        y = att.masked_fill(slots > pos, float("-inf")).softmax(-1) @ value  # (B, nh, 1, hd); later slots masked
        return self.proj(y.transpose(1, 2).reshape(B, 1, D)), key, value


class Block(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(c.d_model)
        self.attn = SelfAttention(c)
        self.ln2 = nn.LayerNorm(c.d_model)
        self.mlp = nn.Sequential(nn.Linear(c.d_model, 4 * c.d_model), nn.GELU(), nn.Linear(4 * c.d_model, c.d_model))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))

    def step(self, x, pos, past_key, past_value):
        y, key, value = self.attn.step(self.ln1(x), pos, past_key, past_value)
        x = x + y
        return x + self.mlp(self.ln2(x)), key, value


class Transformer(ARModel):
    family = "transformer"
    Config = TransformerConfig
    training_defaults = {
        "image": dict(steps=1500, batch_size=64, lr=2e-3, eval_every=250,
                      model=dict(layers=4, d_model=64, heads=4, dropout=0.2)),
        "text": dict(steps=2700, batch_size=32, seq_len=128, lr=2e-3,
                     model=dict(layers=4, d_model=128, heads=4, max_len=128, dropout=0.1)),
        "audio": dict(steps=1500, batch_size=16, seq_len=256, lr=1e-3,
                      model=dict(layers=4, d_model=128, heads=4, max_len=256)),
    }

    @classmethod
    def data_config(cls, values, *, levels, num_classes, image_shape):
        values = super().data_config(values, levels=levels, num_classes=num_classes, image_shape=image_shape)
        return values if image_shape is None else {**values, "max_len": image_shape[0] * image_shape[1]}

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = c = config
        self.token = nn.Embedding(c.vocab_size + 1, c.d_model)  # last id: start symbol
        self.position = nn.Embedding(c.max_len, c.d_model)
        self.cond = nn.Embedding(c.num_classes, c.d_model) if c.num_classes else None
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size)

    @property
    def max_length(self) -> int:
        return self.config.max_len

    def state_spec(self) -> tuple[StateSpec, ...]:
        c = self.config
        shape = (c.heads, c.max_len, c.d_model // c.heads)
        return tuple(StateSpec(f"past_key_values.{i}.{kv}", shape) for i in range(c.layers) for kv in ("key", "value"))

    def _embed(self, u: torch.Tensor, positions: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        x = self.token(u) + self.position(positions)  # (B, T, D)
        if self.cond is not None:
            x = x + self.cond(cond)[:, None]
        return self.drop(x)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T) int64, T <= max_len -> logits (B, T, V); logits[:, t] predicts x_t from x_<t."""
        T = x.shape[1]
        if T > self.config.max_len:
            raise ValueError(f"sequence length {T} exceeds the maximum context {self.config.max_len}")
        h = self._embed(shift_right(x, self.config.vocab_size), torch.arange(T, device=x.device), cond)
        for block in self.blocks:
            h = block(h)  # (B, T, D)
        return self.head(self.ln_f(h))

    def step(self, token, pos, state, cond=None):
        """token (B,) x_{pos-1} or the start symbol; pos < max_len -> (logits (B, V), new state)."""
        if not torch.compiler.is_compiling() and int(pos) >= self.config.max_len:
            raise ValueError(f"position {int(pos)} is past the maximum context {self.config.max_len}")
        h = self._embed(token[:, None], pos.view(1), cond)  # (B, 1, D)
        new_state = {}
        for i, block in enumerate(self.blocks):
            k, v = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
            h, new_state[k], new_state[v] = block.step(h, pos, state[k], state[v])
        return self.head(self.ln_f(h))[:, 0], new_state
