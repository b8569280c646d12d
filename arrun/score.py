"""Negative log-likelihood of the user's data, in bits per dimension, by the rule of
``contract.scoring`` that ``artrain eval`` follows too. The data kind's adapter (``kinds``) turns DATA
into token sequences; the full graph scores a batch of equal-length pieces in one run (a windowed model's
overlapping pieces, each scored past its context), a step graph by teacher forcing through the ``runtime``
step loop, prefilled in chunks where the graph takes them: the rollout itself, so a windowed model's step
graph scores each sequence whole.
"""
from __future__ import annotations

import numpy as np

from .contract.errors import ARError, first_line
from .contract.features import mulaw_features
from .contract.scoring import Score, chunks
from .runtime import Stepper, full_logits, prefill
from .session import ORT_ERRORS, Model

MAX_LOGITS = 1 << 24  # floats of logits per full-graph run (64 MB)
MAX_STEP_BATCH = 256
STEP_BLOCK = 4096  # positions prefilled per call of ``prefill`` (bounds the logits held at once)


def score(model: Model, sequences: list[np.ndarray], conditions: list[int] | int | None = None) -> dict:
    """-> {bits_per_dim, nats_per_dim, n_dims, n_sequences, n_chunks, graph, unit}; ``conditions``: one class
    id for all sequences or one per sequence, checked by ``check_condition`` (None: unconditional). A vocoder
    scores each sequence given its own features (``mulaw_features``), as ``artrain eval`` does."""
    info = model.info
    if conditions is None or isinstance(conditions, int):
        conditions = [conditions] * len(sequences)
    receptive_field = info.receptive_field if info.graph == "full" else 0  # the step graph is the rollout
    pieces = [(piece, skip, c) for s, c in zip(sequences, conditions)
              for piece, skip in chunks(s, info.max_length, receptive_field)]  # a vocoder's: whole sequences
    by_shape: dict[tuple[int, int], list[tuple[np.ndarray, int | None]]] = {}
    for piece, skip, c in pieces:
        by_shape.setdefault((len(piece), skip), []).append((piece, c))
    nats = 0.0
    try:
        for (T, skip), group in sorted(by_shape.items()):
            x = np.stack([piece for piece, _ in group])  # (N, T)
            labels = None if info.num_classes == 0 else np.array([c for _, c in group], np.int64)  # (N,)
            size = max(1, MAX_LOGITS // (T * info.output_width)) if info.graph == "full" else MAX_STEP_BATCH
            for i in range(0, len(x), size):
                cond = None if labels is None else labels[i:i + size]
                rows = x[i:i + size]
                frames = None
                if info.features:
                    frames = np.stack([mulaw_features(row, info.features, info.vocab_size) for row in rows])  # (n, F, M)
                nats += _nll_full(model, rows, cond, skip, frames) if info.graph == "full" else \
                    _nll_step(model, rows, cond, frames)
    except ORT_ERRORS as e:
        raise ARError(f"onnxruntime failed while scoring ({first_line(e)}); rerun with AR_DEBUG=1 for details") from None
    result = Score.of(nats, sum(len(p) - skip for p, skip, _ in pieces))
    return {"bits_per_dim": result.bits_per_dim, "nats_per_dim": result.nats_per_dim, "n_dims": result.n_dims,
            "n_sequences": len(sequences), "n_chunks": len(pieces), "graph": info.graph, "unit": model.kind.unit}


def _nll_full(model: Model, x: np.ndarray, cond: np.ndarray | None, skip: int, frames: np.ndarray | None) -> float:
    """x (B, T) [, frames (B, F, M)] through the full graph: logits (B, T, V) in one run; the first ``skip``
    are context."""
    return model.info.head.nll(full_logits(model, x, cond, frames)[:, skip:], x[:, skip:])


def _nll_step(model: Model, x: np.ndarray, cond: np.ndarray | None, frames: np.ndarray | None) -> float:
    """x (B, T), a whole sequence (no context-only part), through the step graph by teacher forcing:
    position t is fed x_{t-1}."""
    stepper = Stepper(model, len(x))
    stepper.reset(cond, frames)
    inputs = np.concatenate([np.full((len(x), 1), model.info.start_token, np.int64), x[:, :-1]], axis=1)  # (B, T)
    total, head = 0.0, model.info.head
    for i in range(0, x.shape[1], STEP_BLOCK):
        outputs = prefill(stepper, inputs[:, i:i + STEP_BLOCK], np.full(len(x), i, np.int64))  # (B, block, W)
        total += head.nll(outputs, x[:, i:i + STEP_BLOCK])
    return total
