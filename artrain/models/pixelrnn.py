"""PixelRNN with Row LSTM layers (van den Oord et al. 2016, "Pixel Recurrent Neural Networks", section 3.1).

Each layer is an LSTM that runs down the image one row at a time and computes a whole row at once.
Its gates at pixel (i, j) are an input-to-state convolution along row i plus a state-to-state
convolution (kernel 3) over the layer's own hidden states of row i - 1, columns j-1, j, j+1 (zero outside
the image and above row 0): [i, f, o, g] = K_is * x_i + K_ss * h_{i-1}; c = sigmoid(f) * c_above +
sigmoid(i) * tanh(g); h = sigmoid(o) * tanh(c), c_above being the cell state of pixel (i - 1, j). Every
pixel thus sees a triangle of rows above it. With k = kernel_size and r = k // 2, the input-to-state
convolution of layer 0 is masked (mask A, as the paper's first masked convolution): columns j-r..j-1 of
the pixel embeddings of row i and columns j-1, j, j+1 of row i - 1 (without the row above, the last
pixel of every row would be seen by no later pixel); later layers (mask B) cover columns j-r..j of the
previous layer's output. A layer outputs
Linear(dropout(h)), plus its input after layer 0 (residual); the head and the class conditioning (a
per-layer bias on the gates) are PixelCNN's. Pixels are in raster order: position p = i * W + j.

Step state (L layers, C channels); before the step for pixel (i, j):
- ``h`` (B, W, L + 1, C): plane 0 the pixel embeddings (layer 0's input), row i at columns < j - 1 and
  row i - 1 from column j - 1 on; plane l + 1 layer l's hidden states, row i at columns < j and row i - 1 at
  columns >= j;
- ``c`` (B, W, L, C): the cell states, laid out as the hidden states;
- ``h_diag`` (B, L, C): each layer's hidden state at (i - 1, j - 1), which ``h`` no longer holds;
- ``left`` (B, L, r, C): each layer's input-to-state inputs left of the pixel, as PixelCNN's ``left``.
Each row of a batch is at its own position (column j is the row's own). The step reads columns j-1, j, j+1
of ``h`` (one GatherND: the row above) and column j of ``c``, and writes pixel (i, j - 1) and the new
hidden states into ``h`` and the new cell states into ``c`` with one ScatterND each, on the state
input, after (by data) every read of it: a finished row becomes the row above without any copy, and a
runtime may bind ``h`` and ``c`` in place. ``h_diag`` and ``left`` are small and replaced whole (the new
value is the whole buffer). At column 0 ``h_diag`` and ``left`` read as zero padding. Every pixel costs one
cell update per layer: O(layers) work, the same at every column.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from arrun.contract.schema import StateSpec

from .base import ImageConfig, ImageModel


@dataclass(frozen=True)
class PixelRNNConfig(ImageConfig):
    """kernel_size: the input-to-state convolution sees r = kernel_size // 2 columns to the left."""


def lstm_cell(a: torch.Tensor, c_above: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gate pre-activations a (..., 4C, ...) ordered i, f, o, g along ``dim`` and the cell state above
    (..., C, ...) -> (h, c), both (..., C, ...)."""
    i, f, o, g = a.chunk(4, dim=dim)
    c = torch.sigmoid(f) * c_above + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class RowLSTMLayer(nn.Module):
    def __init__(self, c: PixelRNNConfig, first: bool):
        super().__init__()
        self.first = first
        self.r = r = c.kernel_size // 2
        ch = c.channels
        self.input_conv = nn.Conv2d(ch, 4 * ch, (1, r if first else r + 1))  # masked: left of / up to the pixel
        self.above_conv = nn.Conv1d(ch, 4 * ch, 3, padding=1, bias=False) if first else None  # inputs of row i-1
        self.state_conv = nn.Conv1d(ch, 4 * ch, 3, padding=1, bias=False)  # row above: columns j-1, j, j+1
        self.out = nn.Linear(ch, ch)
        self.cond = nn.Embedding(c.num_classes, 4 * ch) if c.num_classes else None
        self.drop = nn.Dropout(c.dropout)

    def cond_bias(self, cond: torch.Tensor | None) -> torch.Tensor | int:
        """-> gate bias (B, 4C), or 0 when unconditional."""
        return 0 if self.cond is None else self.cond(cond)

    def output(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., C) and layer inputs (..., C) channel-last -> outputs (..., C); after layer 0
        the input is added (layer 0's input is the pixel itself, which it must not see)."""
        out = self.out(self.drop(h))
        return out if self.first else out + x

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """x (B, C, H, W) -> (B, C, H, W): input-to-state for every row at once, then one row at a time."""
        B, C, H, W = x.shape
        shifted = x[..., :-1] if self.first else x  # layer 0 drops the last column: pixel (i, j) is masked
        a_in = self.input_conv(F.pad(shifted, (self.r, 0)))  # (B, 4C, H, W)
        if self.above_conv is not None:  # row i - 1 of the inputs, columns j-1..j+1 (zeros above row 0)
            above = F.pad(x, (0, 0, 1, 0))[:, :, :-1].permute(0, 2, 1, 3).flatten(0, 1)  # (B*H, C, W)
            a_in = a_in + self.above_conv(above).view(B, H, 4 * C, W).permute(0, 2, 1, 3)
        bias = self.cond_bias(cond)
        if not isinstance(bias, int):
            a_in = a_in + bias[:, :, None, None]
        h = c = x.new_zeros(B, C, W)  # the row above row 0
        rows = []
        for i in range(H):
            h, c = lstm_cell(a_in[:, :, i] + self.state_conv(h), c, dim=1)  # (B, C, W)
            rows.append(h)
        h = torch.stack(rows, dim=2).permute(0, 2, 3, 1)  # (B, H, W, C)
        return self.output(h, x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def step(self, taps: torch.Tensor, above: torch.Tensor, c_above: torch.Tensor, cond, x: torch.Tensor | None):
        """One pixel. taps (B, kw, C) input-to-state inputs, layer 0's followed by the pixel embeddings of
        the row above at columns j-1, j, j+1; above (B, 3, C) hidden states of the row above at columns
        j-1, j, j+1; c_above (B, C); x (B, C) the layer input at the pixel (None for layer 0) ->
        (output (B, C), h (B, C), c (B, C))."""
        w_in = self.input_conv.weight.permute(0, 2, 3, 1).flatten(1)  # (4C, kw * C), taps order
        weights = [w_in] if self.above_conv is None else [w_in, self.above_conv.weight.permute(0, 2, 1).flatten(1)]
        w_state = self.state_conv.weight.permute(0, 2, 1).flatten(1)  # (4C, 3 * C), column order
        inputs = torch.cat([taps, above], dim=1).flatten(1)  # (B, (kw [+ 3] + 3) * C)
        a = F.linear(inputs, torch.cat([*weights, w_state], dim=1), self.input_conv.bias)  # (B, 4C): one product
        h, c = lstm_cell(a + self.cond_bias(cond), c_above, dim=-1)
        return self.output(h, x), h, c


class PixelRNN(ImageModel):
    family = "pixelrnn"
    Config = PixelRNNConfig
    training_defaults = {
        "image": dict(steps=1200, batch_size=32, lr=3e-3, eval_every=300, model=dict(layers=4, channels=32, dropout=0.3)),
    }
    sizes = {"tiny": dict(layers=2, channels=16), "small": dict(layers=4, channels=32), "base": dict(layers=6, channels=64)}

    def __init__(self, config: PixelRNNConfig):
        super().__init__(config, RowLSTMLayer)

    def state_spec(self) -> tuple[StateSpec, ...]:
        c = self.config
        L, C, W, r = c.layers, c.channels, c.width, c.kernel_size // 2
        return (StateSpec("h", (W, L + 1, C)), StateSpec("c", (W, L, C)), StateSpec("h_diag", (L, C)),
                StateSpec("left", (L, r, C)))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, H, W) int64 levels -> logits (B, H, W, V); logits[:, i, j] predicts x[:, i, j]."""
        h = self.embed(x).permute(0, 3, 1, 2)  # (B, C, H, W)
        for layer in self.layers:
            h = layer(h, cond)
        return self.head(h.permute(0, 2, 3, 1))  # (B, H, W, V)

    def step(self, token, pos, state, cond=None):
        """token (B,) pixel pos - 1 (ignored at pos 0); pos (B,) int64 in [0, H*W), one position per row (a
        0-dim pos serves every row) -> (logits (B, V), new state). Rows are independent: row b's outputs and new
        state depend only on its own token, position, state and condition."""
        c = self.config
        B, L, C, W = token.shape[0], c.layers, c.channels, c.width
        pos = pos.expand(B) if pos.dim() == 0 else pos  # (B,)
        col = pos % W  # (B,)
        # read: columns j-1, j, j+1 of every plane (the row above), each row at its own column (GatherND), zero
        # outside the image
        columns = col[:, None] + torch.arange(-1, 2, device=col.device)  # (B, 3)
        valid = ((columns >= 0) & (columns < W)).to(state["h"].dtype)  # (B, 3)
        rows = torch.arange(B, device=col.device)[:, None]  # (B, 1)
        taken = state["h"][rows, columns.clamp(0, W - 1)] * valid[:, :, None, None]  # (B, 3, L + 1, C)
        pixels_above, up = taken[:, :, 0], taken[:, 1:, 1:]  # (B, 3, C), (B, 2, L, C)
        inside = valid[:, :1]  # (B, 1): 0 at column 0, left of it is zero padding
        previous = self.embed(token.clamp(max=c.vocab_size - 1)) * (pos > 0)[:, None]  # (B, C): pixel pos - 1
        emb = previous * inside  # (B, C): pixel (i, j - 1), zero at column 0
        above = torch.cat([(state["h_diag"] * inside[:, :, None])[:, None], up], dim=1)  # (B, 3, L, C): j-1, j, j+1
        c_above = state["c"][rows[:, 0], col]  # (B, L, C)
        left = state["left"] * inside[:, :, None, None]  # (B, L, r, C)
        x, new_h, new_c, new_left = None, [], [], []
        per_layer = zip(self.layers, left.unbind(1), above.unbind(2), c_above.unbind(1))
        for layer, left_i, above_i, c_above_i in per_layer:  # (B, r, C), (B, 3, C), (B, C)
            if layer.first:  # inputs: the embeddings of the r pixels to the left, then of the row above
                taps = torch.cat([left_i[:, 1:], emb[:, None]], dim=1)  # (B, r, C)
                new_left.append(taps)
                taps = torch.cat([taps, pixels_above], dim=1)  # (B, r + 3, C)
            else:  # inputs: the previous layer's outputs at the r pixels to the left and at this pixel
                taps = torch.cat([left_i, x[:, None]], dim=1)  # (B, r + 1, C)
                new_left.append(taps[:, 1:])
            x, h, cell = layer.step(taps, above_i, c_above_i, cond, x)  # (B, C) each
            new_h.append(h)
            new_c.append(cell)
        # write: one column per plane and row (ScatterND on the state inputs, after every read of them)
        written = torch.cat([((col - 1) % W)[:, None], col[:, None].expand(B, L)], dim=1)  # (B, L + 1)
        planes = torch.arange(L + 1, device=col.device)[None]  # (1, L + 1)
        h_col = torch.stack([previous, *new_h], dim=1)  # (B, L + 1, C)
        state = {"h": state["h"].index_put((rows, written, planes), h_col),  # (B, W, L + 1, C)
                 "c": state["c"].index_put((rows[:, 0], col), torch.stack(new_c, dim=1)),  # (B, W, L, C)
                 "h_diag": up[:, 0],  # (B, L, C): (i - 1, j), the diagonal of the next pixel
                 "left": torch.stack(new_left, dim=1)}  # (B, L, r, C)
        return self.head(x), state
