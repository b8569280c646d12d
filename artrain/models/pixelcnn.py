"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders"),
with the cached step of Ramachandran et al. 2017 ("Fast Generation for Convolutional Autoregressive
Models").

A vertical stack sees every row above the current one (no blind spot), a horizontal stack sees the
pixels to the left in the current row plus the vertical stack of that row; gated units; residual
connections in the horizontal stack; class conditioning as a per-layer bias on the gates.
With k = kernel_size and r = k // 2, layer 0 uses a vertical kernel over rows i-r..i-1 and a horizontal
kernel over columns j-r..j-1 (the pixel itself is masked); later layers also include row i (vertical) and
column j (horizontal). Pixels are in raster order: position p = i * W + j.

Step state (L layers, C channels):
- ``rows``  (B, L, r, W, C): each layer's vertical-stack inputs for the r most recent complete rows;
- ``row``   (B, W, C): embeddings of the pixels of the row being generated left of the current one, and of
  the row above from the current column on (each column is overwritten before the row is read whole);
- ``vtoh``  (B, W, L, 2C): the vertical stack's contribution to the horizontal gates for the current row;
- ``left``  (B, L, r, C): each layer's horizontal-stack inputs at the r columns left of the current one.
Each row of a batch is at its own position. At a step where some row is at column 0 (an ONNX ``If``), the
step evaluates the vertical stack of a whole image row for those rows only (gathered, one product per layer
over their W columns, channel-last) and writes it over theirs (ScatterND); at every other step the ``If``
passes ``rows`` and ``vtoh`` through. So each row pays its vertical stack once per image row whether or not
the rows are aligned, and a batch of aligned rows runs the ``If`` body once per image row, as one image does.
Every pixel costs one horizontal stack evaluation: O(layers) work. ``row`` is written one column per step by a
ScatterND on the state input, its only reader (a runtime may bind it in place); ``rows`` and ``vtoh`` come out
of the ``If`` (a runtime keeps two buffers: the pass-through is a copy), ``left`` is replaced whole (with
r = 1 the new value is the whole buffer).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from arrun.contract.schema import StateSpec

from .base import ImageConfig, ImageModel, gate


@dataclass(frozen=True)
class PixelCNNConfig(ImageConfig):
    """kernel_size: the vertical and horizontal stacks see r = kernel_size // 2 rows and columns."""


class GatedLayer(nn.Module):
    def __init__(self, c: PixelCNNConfig, first: bool):
        super().__init__()
        self.first = first
        self.r = r = c.kernel_size // 2
        ch = c.channels
        self.vconv = nn.Conv2d(ch, 2 * ch, (r if first else r + 1, c.kernel_size))
        self.hconv = nn.Conv2d(ch, 2 * ch, (1, r if first else r + 1))
        self.vtoh = nn.Conv2d(2 * ch, 2 * ch, 1)
        self.hout = nn.Linear(ch, ch)
        self.cond = nn.Embedding(c.num_classes, 4 * ch) if c.num_classes else None
        self.drop = nn.Dropout(c.dropout)

    def cond_bias(self, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | tuple[int, int]:
        """-> (vertical bias (B, 2C), horizontal bias (B, 2C)), or zeros when unconditional."""
        return (0, 0) if self.cond is None else self.cond(cond).chunk(2, dim=-1)

    def vertical(self, rows: torch.Tensor, cond_v) -> torch.Tensor:
        """rows (B, C, R, W) padded above -> gate pre-activations (B, 2C, R - kh + 1, W)."""
        a = self.vconv(F.pad(rows, (self.r, self.r)))
        return a if isinstance(cond_v, int) else a + cond_v[:, :, None, None]

    def horizontal_out(self, a: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        """Gate pre-activations (..., 2C) channel-last -> layer output (..., C), residual after layer 0."""
        out = self.hout(self.drop(gate(a, dim=-1)))
        return out if self.first else out + h

    def forward(self, v: torch.Tensor, h: torch.Tensor, cond: torch.Tensor | None):
        """v, h (B, C, H, W) -> (v_out (B, C, H, W), h_out (B, C, H, W))."""
        cond_v, cond_h = self.cond_bias(cond)
        r = self.r
        if self.first:  # shift down / right by dropping the last row / column: pixel (i, j) is masked
            v_pre = self.vertical(F.pad(v[:, :, :-1], (0, 0, r, 0)), cond_v)  # (B, 2C, H, W)
            h_pre = self.hconv(F.pad(h[:, :, :, :-1], (r, 0)))
        else:
            v_pre = self.vertical(F.pad(v, (0, 0, r, 0)), cond_v)
            h_pre = self.hconv(F.pad(h, (r, 0)))
        h_pre = (h_pre + self.vtoh(v_pre)).permute(0, 2, 3, 1)  # (B, H, W, 2C)
        if not isinstance(cond_h, int):
            h_pre = h_pre + cond_h[:, None, None]
        h_out = self.horizontal_out(h_pre, h.permute(0, 2, 3, 1))  # (B, H, W, C)
        return gate(v_pre, dim=1), h_out.permute(0, 3, 1, 2)

    def horizontal_step(self, taps: torch.Tensor, vtoh: torch.Tensor, cond_h, h: torch.Tensor | None):
        """taps (B, kw, C) inputs left of (and, after layer 0, at) the pixel; vtoh (B, 2C) -> (B, C)."""
        weight = self.hconv.weight.permute(0, 2, 3, 1).flatten(1)  # (2C, kw * C), taps order
        a = F.linear(taps.flatten(1), weight, self.hconv.bias) + vtoh + cond_h  # (B, 2C)
        return self.horizontal_out(a, h)


class PixelCNN(ImageModel):
    family = "pixelcnn"
    Config = PixelCNNConfig
    training_defaults = {
        "image": dict(steps=800, batch_size=32, lr=2e-3, eval_every=200, model=dict(layers=6, channels=32, dropout=0.3)),
    }
    sizes = {"tiny": dict(layers=3, channels=16), "small": dict(layers=6, channels=32), "base": dict(layers=10, channels=64)}

    def __init__(self, config: PixelCNNConfig):
        super().__init__(config, GatedLayer)

    def state_spec(self) -> tuple[StateSpec, ...]:
        c = self.config
        r = c.kernel_size // 2
        return (StateSpec("rows", (c.layers, r, c.width, c.channels)), StateSpec("row", (c.width, c.channels)),
                StateSpec("vtoh", (c.width, c.layers, 2 * c.channels)), StateSpec("left", (c.layers, r, c.channels)))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, H, W) int64 levels -> logits (B, H, W, V); logits[:, i, j] predicts x[:, i, j]."""
        v = h = self.embed(x).permute(0, 3, 1, 2)  # (B, C, H, W)
        for layer in self.layers:
            v, h = layer(v, h, cond)
        return self.head(h.permute(0, 2, 3, 1))  # (B, H, W, V)

    def _vertical_row(self, rows, row, cond=None):
        """At the first pixel of a row: the completed row above enters the caches and the vertical stack
        is evaluated for the new row, channel-last, each layer one product over the batch's B * W columns.
        rows (B, L, r, W, C), row (B, W, C) -> (rows, vtoh (B, W, L, 2C))."""
        x = row[:, None]  # (B, 1, W, C): layer 0's newest input row, the completed image row
        new_rows, vtoh = [], []
        for i, layer in enumerate(self.layers):
            past = rows[:, i]  # (B, r, W, C)
            inputs = torch.cat([past[:, 1:] if layer.first else past, x], dim=1)  # (B, kh, W, C)
            padded = F.pad(inputs, (0, 0, layer.r, layer.r))  # (B, kh, W + 2r, C)
            kh, W = inputs.shape[1], inputs.shape[2]
            taps = torch.cat([padded[:, y, k:k + W] for y in range(kh) for k in range(layer.vconv.kernel_size[1])],
                             dim=-1)  # (B, W, kh * kw * C), the vconv weight's order
            weight = layer.vconv.weight.permute(0, 2, 3, 1).flatten(1)  # (2C, kh * kw * C)
            cond_v = layer.cond_bias(cond)[0]
            v_pre = F.linear(taps, weight, layer.vconv.bias) + (cond_v if isinstance(cond_v, int) else cond_v[:, None])
            new_rows.append(torch.cat([past[:, 1:], x], dim=1))  # (B, r, W, C)
            vtoh.append(F.linear(v_pre, layer.vtoh.weight.flatten(1), layer.vtoh.bias))  # (B, W, 2C)
            x = gate(v_pre, dim=-1)[:, None]  # (B, 1, W, C): next layer's input at the new row
        return torch.stack(new_rows, dim=1), torch.stack(vtoh, dim=2)

    def step(self, token, pos, state, cond=None):
        """token (B,) pixel pos - 1 (ignored at pos 0); pos (B,) int64 in [0, H*W), one position per row (a
        0-dim pos serves every row) -> (logits (B, V), new state). Rows are independent: row b's outputs and new
        state depend only on its own token, position, state and condition."""
        c = self.config
        B = token.shape[0]
        pos = pos.expand(B) if pos.dim() == 0 else pos  # (B,)
        col = pos % c.width  # (B,)
        inside = (col != 0)[:, None]  # (B, 1): 0 at column 0, where what lies left is zero padding
        emb = self.embed(token.clamp(max=c.vocab_size - 1)) * (pos > 0)[:, None]  # (B, C); nothing before pixel 0
        # one column written per row: the pixel pos - 1 (a ScatterND on the state, the only read of in.row)
        batch = torch.arange(B, device=token.device)  # (B,)
        row = state["row"].index_put((batch, (pos - 1) % c.width), emb)  # (B, W, C)
        operands = (col, state["rows"], row, state["vtoh"]) + (() if cond is None else (cond,))
        rows, vtoh = torch.cond(  # the vertical stack, only at steps where some row starts an image row
            (col == 0).any(),
            lambda col, rows, row, vtoh, *cond: self._vertical_rows(col, rows, row, vtoh, *cond),
            lambda col, rows, row, vtoh, *cond: (rows.clone(), vtoh.clone()),
            operands,
        )
        left = state["left"] * inside[:, :, None, None]  # (B, L, r, C); zero padding left of column 0
        vtoh_col = vtoh[batch, col]  # (B, L, 2C): each row's own column
        h = None
        new_left = []
        for i, layer in enumerate(self.layers):
            if layer.first:  # inputs: the embeddings of the r pixels to the left
                taps = torch.cat([left[:, i, 1:], (emb * inside)[:, None]], dim=1)  # (B, r, C)
                new_left.append(taps)
            else:  # inputs: the previous layer's outputs at the r pixels to the left and at this pixel
                taps = torch.cat([left[:, i], h[:, None]], dim=1)  # (B, r + 1, C)
                new_left.append(taps[:, 1:])
            h = layer.horizontal_step(taps, vtoh_col[:, i], layer.cond_bias(cond)[1], h)  # (B, C)
        state = {"rows": rows, "row": row, "vtoh": vtoh, "left": torch.stack(new_left, dim=1)}
        return self.head(h), state

    def _vertical_rows(self, col, rows, row, vtoh, cond=None):
        """The rows at column 0 take their new vertical stack, the others keep theirs: the stack is evaluated
        for the rows at column 0 only and written over theirs. -> (rows, vtoh)."""
        starts = (col == 0).nonzero()[:, 0]  # (n,): the rows at column 0
        new_rows, new_vtoh = self._vertical_row(rows[starts], row[starts], None if cond is None else cond[starts])
        return rows.index_put((starts,), new_rows), vtoh.index_put((starts,), new_vtoh)
