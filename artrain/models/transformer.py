"""Decoder-only Transformer (Vaswani et al. 2017) for unbounded sequences: pre-LayerNorm blocks, rotary
position embeddings (RoPE, Su et al. 2021) and sliding-window causal self-attention, optional class
conditioning.

Attention: the query at position t sees the keys at t-W+1..t (W = ``window``, itself included), in
training (a banded causal mask) and in the step graph alike. Positions enter only through the rotation of
queries and keys, so a score depends on relative positions and the model runs for as long as it is
asked. Stacked, L windowed layers make one prediction depend on ``receptive_field`` = L * (W - 1) + 1
predecessors (the start symbol counted as one), which is what scoring feeds each element.

Step state, per layer ``past_key_values.{i}.key`` (B, heads, head_dim, W) and ``.value`` (B, heads, W,
head_dim), the layouts the products read: a ring buffer of the last W keys (already rotated at their
absolute positions) and values, per row. A step takes ``input_ids`` (B, S), 1 <= S <= W elements, row b's
at absolute positions pos[b]..pos[b]+S-1 (``pos`` (B,): rows at different positions share a batch;
prefill: a chunk of a prompt in one call). Its attention has two parts that share one softmax: scores
against the ring as it was (B, nh, S, W), masked by the positions the slots hold (slots never written are
masked) and the window, and scores against the S new keys (B, nh, S, S), causal. The new keys and values
are then scattered into row b's slots (pos[b] + j) mod W: the ring is never concatenated, gathered or
transposed. Each scatter (ScatterND) takes the state input as its data and its output is the new state; the
slots it writes are passed through where(c, slots, slots) with c computed from the products' result, so the
write depends by data on both products that read that ring: no executor order can overwrite a slot before
it is read, and one buffer may serve as the state's input and output (arexport proves it). ``pos`` has no
upper bound: memory and time per step are constant.

Rotation angles are computed in float64 (position * frequency) and reduced to [0, 2 pi) there, so the keys
at position 10**6 rotate as exactly as those at position 10; cos and sin then run in float32 (onnxruntime
before 1.29 has no float64 Cos on the CPU).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from arrun.contract.schema import StateSpec

from .base import ARModel, shift_right

ROPE_BASE = 10000.0


@dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int = 256
    num_classes: int = 0       # class ids added as an embedding at every position (0: unconditional)
    window: int = 256          # W: each position attends to itself and the W - 1 before it
    layers: int = 4
    d_model: int = 256
    heads: int = 4
    dropout: float = 0.0

    def __post_init__(self):
        if self.d_model % self.heads or (self.d_model // self.heads) % 2:
            raise ValueError(f"d_model {self.d_model} must split into {self.heads} heads of an even size (RoPE)")


def rotary(positions: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """positions (..., S) int64 -> cos, sin (..., 1, S, head_dim / 2) float32, angles computed and reduced
    modulo 2 pi in float64 and broadcast over the heads axis."""
    inv_freq = ROPE_BASE ** -(torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim)
    angles = positions.to(torch.float64)[..., None] * inv_freq  # (..., S, hd/2)
    turns = 2 * math.pi
    angles = (angles - turns * torch.floor(angles / turns)).float()  # [0, 2 pi): float32 keeps 1e-7 there
    return angles.cos().unsqueeze(-3), angles.sin().unsqueeze(-3)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, nh, S, hd) rotated pairwise (first half, second half) by the angles of cos/sin."""
    x1, x2 = x.chunk(2, dim=-1)  # 2 x (B, nh, S, hd/2)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def window_mask(query_pos: torch.Tensor, key_pos: torch.Tensor, window: int) -> torch.Tensor:
    """query_pos (..., S), key_pos (..., K) -> allowed (..., S, K) bool: the key was written (position >= 0)
    and lies in the query's window (0 <= q - k < W)."""
    gap = query_pos[..., :, None] - key_pos[..., None, :]  # (..., S, K)
    return (key_pos[..., None, :] >= 0) & (gap >= 0) & (gap < window)


def attend_dense(q, k, v, allowed, past=None):
    """q, k, v (B, nh, S, hd) rotated; allowed (S, K) or (B, 1, S, K) over the keys [*past keys, *the S new
    ones]; past: (keys, values) (B, nh, P, hd) or None -> y (B, nh, S, hd), (keys, values) (B, nh, P + S, hd)."""
    if past is not None:
        k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, nh, P + S, hd)
    # No dropout on the attention weights: with a mask it costs 3x the step on CPU; the residual
    # branches carry the model's dropout.
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed), (k, v)  # (B, nh, S, hd)


def attend_ring(q, k, v, bias, slots, ring):
    """Attention over a ring buffer without copying it for the products. q, k, v (B, nh, S, hd) rotated;
    bias (B', 1, S, W + S): 0 where the query may see the key, -inf where not, over [*the ring's W slots as they
    were, *the S new keys] (B' = B, or 1 for every row); slots (B', S) int64, distinct in a row: where row b's
    new keys go; ring: keys (B, nh, hd, W) and values (B, nh, W, hd), the layouts the products read
    (q @ keys, p @ values).
    -> y (B, nh, S, hd), the new ring: the old one with the S new keys and values written into ``slots``."""
    keys, values = ring
    B, nh, S, hd = q.shape
    # Scaled after the concatenation: onnxruntime fuses a scale next to a MatMul into a FusedMatMul, which at
    # this shape runs at half the speed of the plain MatMul.
    scores = torch.cat([q @ keys, q @ k.transpose(-1, -2)], dim=-1) * hd ** -0.5 + bias  # (B, nh, S, W + S)
    p_ring, p_new = scores.softmax(-1).split([keys.shape[-1], S], dim=-1)  # (B, nh, S, W), (B, nh, S, S)
    from_ring = p_ring @ values  # (B, nh, S, hd): (S, W) @ (W, hd), the last read of the ring
    # The writes go to where(c, slots, slots) == slots, c computed from ``from_ring``: the same slots, but
    # known only once both products that read the ring have run (q @ keys feeds p_ring), so even with one
    # buffer bound as the state's input and output no executor order writes a slot before it is read.
    slots = torch.where(from_ring[:, 0, :, 0].isnan(), slots, slots)  # (B, S)
    row, head = torch.arange(B, device=q.device)[:, None, None], torch.arange(nh, device=q.device)[:, None]
    values = values.index_put((row, head, slots[:, None, :]), v)  # (B, nh, W, hd): rows of hd at (b, h, slot)
    dim = torch.arange(hd, device=q.device)[:, None]  # (hd, 1)
    keys = keys.index_put((row[..., None], head[..., None], dim, slots[:, None, None, :]),
                          k.transpose(-1, -2))  # (B, nh, hd, W): one element at (b, h, d, slot)
    return from_ring + p_new @ v, (keys, values)  # y: + (S, S) @ (S, hd)


class SelfAttention(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.heads = c.heads
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
        self.proj = nn.Linear(c.d_model, c.d_model)

    def forward(self, x, rope, attend):
        """x (B, S, D); rope: cos, sin of the S positions; attend(q, k, v) -> (y (B, nh, S, hd), cache), given
        the rotated queries, keys and values (B, nh, S, hd) -> y (B, S, D), cache."""
        B, S, D = x.shape
        q, k, v = (t.view(B, S, self.heads, D // self.heads).transpose(1, 2) for t in self.qkv(x).split(D, dim=-1))
        y, cache = attend(rotate(q, *rope), rotate(k, *rope), v)  # (B, nh, S, hd)
        return self.proj(y.transpose(1, 2).reshape(B, S, D)), cache


class Block(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(c.d_model)
        self.attn = SelfAttention(c)
        self.ln2 = nn.LayerNorm(c.d_model)
        self.mlp = nn.Sequential(nn.Linear(c.d_model, 4 * c.d_model), nn.GELU(), nn.Linear(4 * c.d_model, c.d_model))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, rope, attend):
        """x (B, S, D) -> (B, S, D), the cache ``attend`` returns (see SelfAttention)."""
        y, kv = self.attn(self.ln1(x), rope, attend)
        x = x + self.drop(y)
        return x + self.drop(self.mlp(self.ln2(x))), kv


class Transformer(ARModel):
    family = "transformer"
    Config = TransformerConfig
    genai = True  # step_growing
    training_defaults = {
        "image": dict(steps=1500, batch_size=64, lr=2e-3, eval_every=250,
                      model=dict(layers=4, d_model=64, heads=4, dropout=0.2)),
        "text": dict(steps=2700, batch_size=32, seq_len=256, lr=2e-3,
                     model=dict(layers=4, d_model=128, heads=4, window=128, dropout=0.1)),
        "audio": dict(steps=1500, batch_size=16, seq_len=512, lr=1e-3,
                      model=dict(layers=4, d_model=128, heads=4, window=256)),
    }
    sizes = {"tiny": dict(layers=2, d_model=64, heads=2, window=64),
             "small": dict(layers=4, d_model=128, heads=4, window=128),
             "base": dict(layers=6, d_model=256, heads=8, window=256)}

    @classmethod
    def data_config(cls, values, *, levels, num_classes, image_shape):
        values = super().data_config(values, levels=levels, num_classes=num_classes, image_shape=image_shape)
        return values if image_shape is None else {**values, "window": image_shape[0] * image_shape[1]}

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = c = config
        self.token = nn.Embedding(c.vocab_size + 1, c.d_model)  # last id: start symbol
        self.cond = nn.Embedding(c.num_classes, c.d_model) if c.num_classes else None
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size)

    @property
    def window(self) -> int:
        return self.config.window

    @property
    def receptive_field(self) -> int:
        return self.config.layers * (self.config.window - 1) + 1

    @property
    def step_tokens(self) -> int:
        return self.config.window

    def state_spec(self) -> tuple[StateSpec, ...]:
        c = self.config
        hd = c.d_model // c.heads
        shapes = {"key": (c.heads, hd, c.window), "value": (c.heads, c.window, hd)}  # the layouts step's products read
        return tuple(StateSpec(f"past_key_values.{i}.{kv}", shapes[kv]) for i in range(c.layers) for kv in shapes)

    def _embed(self, u: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        x = self.token(u)  # (B, S, D)
        if self.cond is not None:
            x = x + self.cond(cond)[:, None]
        return self.drop(x)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(self.ln_f(h))  # (B, S, V)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T) int64, any T -> logits (B, T, V); logits[:, t] predicts x_t from x_<t."""
        T = x.shape[1]
        positions = torch.arange(T, device=x.device)  # (T,)
        rope = rotary(positions, self.config.d_model // self.config.heads)
        allowed = window_mask(positions, positions, self.config.window)  # (T, T) banded causal
        h = self._embed(shift_right(x, self.config.vocab_size), cond)
        for block in self.blocks:
            h, _ = block(h, rope, partial(attend_dense, allowed=allowed))  # (B, T, D)
        return self._head(h)

    def step(self, token, pos, state, cond=None):
        """token (B, S) int64, 1 <= S <= W: row b's elements at positions pos[b]-1..pos[b]+S-2 (the start
        symbol for position -1); pos (B,) int64 >= 0 (a 0-dim pos: every row there)
        -> (logits (B, S, V), row b's for positions pos[b]..pos[b]+S-1; new state)."""
        W, S = self.config.window, token.shape[1]
        if not torch.compiler.is_compiling() and not 1 <= S <= W:
            raise ValueError(f"a step takes 1..{W} elements (the window), got {S}")
        first = pos.reshape(-1, 1)  # (B', 1), B' = B or 1
        new = first + torch.arange(S, device=token.device)  # (B', S) absolute positions of the new elements
        slots = torch.arange(W, device=token.device)  # (W,)
        written = first - 1 - torch.remainder(first - 1 - slots, W)  # (B', W) position each slot holds, < 0: none
        allowed = window_mask(new, torch.cat([written, new], -1), W)[:, None]  # (B', 1, S, W + S)
        bias = torch.zeros_like(allowed, dtype=torch.float32).masked_fill(~allowed, float("-inf"))  # once for all layers
        attend = partial(attend_ring, bias=bias, slots=torch.remainder(new, W))  # slots (B', S): where the new go
        rope = rotary(new, self.config.d_model // self.config.heads)  # (B', 1, S, hd/2)
        h = self._embed(token, cond)  # (B, S, D)
        new_state = {}
        for i, block in enumerate(self.blocks):
            k, v = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
            h, (new_state[k], new_state[v]) = block(h, rope, partial(attend, ring=(state[k], state[v])))
        return self._head(h), new_state

    def step_growing(self, token, attention_mask, position_ids, past):
        """The onnxruntime-genai form of ``step``: a KV cache that grows by S per call instead of a ring.
        token (B, S); attention_mask (B, P + S) 1 for real elements; position_ids (B, S); past: per layer
        (key, value) (B, nh, P, hd) -> (logits (B, S, V), per layer (key, value) (B, nh, P + S, hd)).
        The window is applied by mask, so up to any length it gives the ring-buffer step's distribution."""
        key_pos = torch.cumsum(attention_mask, dim=-1) - 1  # (B, P + S) positions of the real elements
        key_pos = key_pos.masked_fill(attention_mask == 0, -1)
        allowed = window_mask(position_ids, key_pos, self.config.window)[:, None]  # (B, 1, S, P + S)
        rope = rotary(position_ids, self.config.d_model // self.config.heads)  # (B, 1, S, hd/2)
        h = self._embed(token, None)
        present = []
        for block, kv in zip(self.blocks, past):
            h, kv = block(h, rope, partial(attend_dense, allowed=allowed, past=kv))
            present.append(kv)
        return self._head(h), present
