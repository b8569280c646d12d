"""The step loop compress and decompress both run: the elements cut into chunks, chunks side by side.

The elements are cut into chunks of ``chunk``, each coded from the model's initial state; ``batch`` chunks at
a time are the rows of one batch (the last group smaller); a row whose chunk has ended steps on with token 0
and is ignored. Order in the coder: step by step, the active rows in row order.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..progress import Progress
from ..runtime import Stepper
from ..session import Model


def run_chunks(model: Model, total: int, chunk: int, batch: int, condition: int | None,
               code: Callable[[np.ndarray, np.ndarray], np.ndarray], progress: bool = False) -> None:
    """Step ``model`` through the chunks of ``total`` elements, ``batch`` chunks side by side, each from the
    initial state. At every step ``code(outputs (n, W), index (n,))`` gets the outputs of the rows whose chunk
    goes on and the indices of their elements, and returns those elements (n,) int64 (known when encoding,
    decoded when decoding): they are what these rows are fed next."""
    info = model.info
    first = np.arange(0, total, chunk)  # (C,) each chunk's first element
    length = np.minimum(first + chunk, total) - first  # (C,)
    steps = sum(int(length[g:g + batch].max()) for g in range(0, len(first), batch))
    bar = Progress(steps, "coding") if progress else None
    steppers: dict[int, Stepper] = {}
    done = 0
    try:
        for g in range(0, len(first), batch):
            rows, lengths = first[g:g + batch], length[g:g + batch]  # (B,)
            B = len(rows)
            if B not in steppers:  # the full batch, and the last group's
                steppers[B] = Stepper(model, B)
            stepper = steppers[B]
            stepper.reset(None if condition is None else np.full(B, condition, np.int64))
            feed = np.full(B, info.start_token, np.int64)  # (B,)
            position = np.zeros(B, np.int64)  # (B,) every row at the same position
            for t in range(int(lengths.max())):
                position[:] = t
                outputs = stepper.step(feed, position)  # (B, W)
                active = lengths > t  # (B,)
                feed = np.zeros(B, np.int64)
                feed[active] = code(outputs[active], rows[active] + t)
                done += 1
                if bar is not None:
                    bar(done)
    finally:
        if bar is not None:
            bar.close()
