"""Held-out negative log-likelihood in bits per dimension, by the rule of ``arrun.contract.scoring``
(which ``arrun score`` follows too): each sequence scored from the initial state in chunks of the model's
maximum length, or in overlapping pieces of a windowed model's receptive field; a vocoder given each
sequence's own features (``arrun.contract.features.mulaw_features``)."""
from __future__ import annotations

import numpy as np
import torch

from arrun.contract.features import mulaw_features
from arrun.contract.scoring import Score, chunks

from .data import Split
from .models import ARModel, check_outputs, family_call


@torch.no_grad()
def evaluate(model: ARModel, split: Split, *, batch_tokens: int = 65536, max_batch: int = 256) -> Score:
    """Bits/dim of ``split`` under ``model`` (in eval mode). Chunks are batched by length and right-padded;
    the families are causal, so padding never changes the logits of the real elements."""
    was_training = model.training
    model.eval()
    device, spec = next(model.parameters()).device, model.feature_spec
    labels = [-1] * len(split) if split.labels is None else split.labels.tolist()
    pieces = [(piece, skip, labels[i]) for i in range(len(split))
              for piece, skip in chunks(split.sequence(i), model.max_length, model.receptive_field)]
    pieces.sort(key=lambda p: len(p[0]))
    total_nats, n_dims, i = 0.0, 0, 0
    while i < len(pieces):
        longest = len(pieces[min(len(pieces), i + max_batch) - 1][0])
        size = max(1, min(max_batch, batch_tokens // max(longest, 1)))
        group = pieces[i : i + size]
        i += len(group)
        T = len(group[-1][0])
        x = torch.zeros(len(group), T, dtype=torch.long)
        mask = torch.zeros(len(group), T, dtype=torch.bool)
        for row, (seq, skip, _) in enumerate(group):
            x[row, : len(seq)] = torch.from_numpy(seq.astype(np.int64))
            mask[row, skip: len(seq)] = True  # the first `skip` elements are context only
        cond = torch.tensor([label for _, _, label in group]) if split.labels is not None else None
        cond = cond.to(device) if cond is not None and getattr(model.config, "num_classes", 0) else None
        features = {}
        if spec is not None:  # a vocoder: each piece's own frames, zero frames past its end
            frames = np.zeros((len(group), spec.frames(T), spec.n_mels), np.float32)  # (B, F, M)
            for row, (seq, _, _) in enumerate(group):
                clip = mulaw_features(seq, spec, model.config.vocab_size)
                frames[row, :len(clip)] = clip
            features["features"] = torch.from_numpy(frames).to(device)
        with family_call(model, "sequence_logits"):
            outputs = model.sequence_logits(x.to(device), cond, **features)  # (B, T, W)
        check_outputs(model, "sequence_logits", outputs, x.shape)
        nll = model.output_nll(outputs.float(), x.to(device))  # (B, T)
        total_nats += nll[mask.to(device)].double().sum().item()
        n_dims += int(mask.sum())
    model.train(was_training)
    return Score.of(total_nats, n_dims)
