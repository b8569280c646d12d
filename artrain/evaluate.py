"""Held-out negative log-likelihood in bits per dimension.

The scoring rule (arrun's ``score`` follows it exactly): every sequence of the split is scored from the
model's initial state in consecutive chunks of ``model.max_length`` elements (the whole sequence when the
model is unbounded); bits/dim = sum over all elements of -log2 p(x_t | x_<t within the chunk) / n_dims.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .data import Split
from .models import ARModel


@dataclass(frozen=True)
class EvalResult:
    bits_per_dim: float
    nats_per_dim: float
    n_dims: int


def chunks(split: Split, max_length: int) -> list[tuple[np.ndarray, int]]:
    """(tokens, label) pieces: each sequence cut into consecutive chunks of max_length (0: whole)."""
    out = []
    for i in range(len(split)):
        seq = split.sequence(i)
        label = -1 if split.labels is None else int(split.labels[i])
        step = max_length or len(seq)
        out.extend((seq[s : s + step], label) for s in range(0, len(seq), step))
    return out


@torch.no_grad()
def evaluate(model: ARModel, split: Split, *, batch_tokens: int = 65536, max_batch: int = 256) -> EvalResult:
    """Bits/dim of ``split`` under ``model`` (in eval mode). Chunks are batched by length and right-padded;
    the families are causal, so padding never changes the logits of the real elements."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pieces = sorted(chunks(split, model.max_length), key=lambda p: len(p[0]))
    total_nats, n_dims, i = 0.0, 0, 0
    while i < len(pieces):
        longest = len(pieces[min(len(pieces), i + max_batch) - 1][0])
        size = max(1, min(max_batch, batch_tokens // max(longest, 1)))
        group = pieces[i : i + size]
        i += len(group)
        T = len(group[-1][0])
        x = torch.zeros(len(group), T, dtype=torch.long)
        mask = torch.zeros(len(group), T, dtype=torch.bool)
        for row, (seq, _) in enumerate(group):
            x[row, : len(seq)] = torch.from_numpy(seq.astype(np.int64))
            mask[row, : len(seq)] = True
        cond = torch.tensor([label for _, label in group]) if split.labels is not None else None
        cond = cond.to(device) if cond is not None and getattr(model.config, "num_classes", 0) else None
        logits = model.sequence_logits(x.to(device), cond)  # (B, T, V)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), x.to(device).flatten(), reduction="none")  # (B*T,)
        total_nats += nll[mask.to(device).flatten()].double().sum().item()
        n_dims += int(mask.sum())
    model.train(was_training)
    nats = total_nats / max(n_dims, 1)
    return EvalResult(bits_per_dim=nats / math.log(2), nats_per_dim=nats, n_dims=n_dims)
