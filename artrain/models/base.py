"""What every family shares: the explicit-state step contract and two small helpers.

Contract (every family):
- ``forward(x, cond=None)`` -> logits for every element in parallel (teacher forcing);
  logits at position t are the distribution of x_t given x_<t (and the condition).
- ``init_state(batch_size)`` -> dict name -> float32 zeros of shape (batch_size, *state_shapes()[name]).
- ``step(token, pos, state, cond=None)`` -> (logits (B, V), new_state). ``token`` (B,) int64 is the
  element at position pos - 1, or the start symbol ``vocab_size`` at pos == 0; ``pos`` is a 0-dim int64
  tensor, the index of the element whose distribution is returned. The input state is never
  modified; the new state has the same names, shapes and dtypes.
Rolling ``step`` for pos = 0..T-1 from ``init_state`` reproduces ``forward`` (float32, max abs diff 1e-5).
"""
from __future__ import annotations

import torch
from torch import nn


class ARModel(nn.Module):
    """Base class of the three families; subclasses define ``state_shapes`` and ``step``."""

    uses_position = True  # whether ``step`` reads ``pos`` (an exported step graph then takes it as an input)

    @property
    def max_length(self) -> int:
        """Positions one sequence may have (0: unbounded); longer data is scored in chunks of this."""
        return 0

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """State tensor name -> shape without the leading batch dimension (all float32, initially 0)."""
        raise NotImplementedError

    def init_state(self, batch_size: int) -> dict[str, torch.Tensor]:
        device = next(self.parameters()).device
        return {name: torch.zeros(batch_size, *shape, device=device) for name, shape in self.state_shapes().items()}

    def sequence_logits(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) for flat sequences x (B, T); families with a 2-D layout override it."""
        return self(x, cond)


def gate(a: torch.Tensor, dim: int) -> torch.Tensor:
    """Gated activation unit tanh(a1) * sigmoid(a2), halves taken along ``dim``."""
    filt, gate_ = a.chunk(2, dim=dim)
    return torch.tanh(filt) * torch.sigmoid(gate_)


def shift_right(x: torch.Tensor, start: int) -> torch.Tensor:
    """(B, T) -> (B, T) inputs u with u_0 = start and u_t = x_{t-1}: the model at t sees only x_<t."""
    return torch.cat([torch.full_like(x[:, :1], start), x[:, :-1]], dim=1)
