"""Streams that join and leave a running batch: one step graph, a batch of ``slots`` rows, each row an
independent stream (its own position, state, condition, features and prompt).

    streams = Streams(model, slots=8)             # a step graph opened by ``session.open_model``
    a = streams.join(prompt=tokens)               # -> its slot; its row reset to the initial state, position 0
    b = streams.join(condition=3)                 # a conditional model: the stream's class
    c = streams.join(features=frames)             # a vocoder: the stream's own frames (F, M)
    tokens = np.zeros(streams.slots, np.int64)
    while streams.running.any():
        outputs = streams.step(tokens)            # (slots, W): row s is slot s's distribution at its position
        for s in np.flatnonzero(streams.sampling):  # slots whose prompt is consumed: draw their next element
            tokens[s] = draw(outputs[s])
            if done(s):
                streams.leave(s)                  # its slot is free for the next join

A stream joins a free slot and leaves when done, between any two steps. ``step`` advances every running
stream by one element: a slot that joined since the last step is fed the start symbol, one inside its prompt
its next prompt element (one per step, while the others go on sampling), any other the element the caller
drew from its last outputs (``tokens[slot]``). Free slots idle at position 0 and their outputs mean nothing.
Rows are independent (contract format 6), so a stream's outputs, and the tokens drawn from them with the same
uniforms, are the same whether it runs alone or joins a batch midway.

Joining a full batch, leaving a slot that is not running, stepping with tokens that are not one level per
slot, or stepping a stream past what its model or its features allow raise ``StreamError`` (a ValueError, and a UsageError that the CLI prints as one line).
"""
from __future__ import annotations

import numpy as np

from .contract.errors import UsageError
from .runtime import RowError, Stepper
from .session import Model


class StreamError(RowError):
    """A join, leave or step that does not fit the batch: full, already left, or past a stream's end."""


class Streams:
    """A batch of ``slots`` streams on ``model``'s step graph (IO-bound ``runtime.Stepper``, in-place state
    where the metadata declares it). Attributes, each (slots,): ``running`` bool, ``position`` int64 the
    position of each running stream's next output, ``sampling`` bool after a step: rows of the last outputs
    that predict a new element (the stream's prompt is consumed)."""

    def __init__(self, model: Model, slots: int):
        info = model.info
        if info.graph != "step":
            raise UsageError(f"{model.path} is a {info.graph} graph; streams run the step graph (step.onnx)")
        if slots < 1:
            raise StreamError(f"a batch of streams needs at least one slot, got {slots}")
        self.info, self.slots = info, slots
        self._stepper = Stepper(model, slots)
        features = None
        if info.features:
            features = np.zeros((slots, 1, info.features.n_mels), np.float32)  # idle rows: one zero frame
        self._stepper.reset(np.zeros(slots, np.int64) if info.num_classes else None, features)
        self.running = np.zeros(slots, bool)
        self.position = np.zeros(slots, np.int64)
        self.sampling = np.zeros(slots, bool)
        self._limit = np.zeros(slots, np.int64)  # (slots,) positions each stream may take
        self._inputs = np.full((slots, 1), info.start_token, np.int64)  # (slots, 1 + P) start + prompt per row
        self._forced = np.ones(slots, np.int64)  # (slots,) inputs forced from _inputs: 1 + prompt length
        self._feed = np.zeros(slots, np.int64)  # (slots,) the input_ids of the next step
        self._stepped = np.zeros(slots, np.int64)  # (slots,) the positions of the last step

    @property
    def free(self) -> list[int]:
        return np.flatnonzero(~self.running).tolist()

    def join(self, *, prompt=(), condition: int | None = None, features: np.ndarray | None = None) -> int:
        """Start a stream in a free slot -> the slot. prompt: tokens (P,) fed before it samples; condition: its
        class on a conditional model (None: the model's unconditioned id where it declares one); features: its frames (F, M) on a vocoder (it may take F * hop elements)."""
        info = self.info
        free = self.free
        if not free:
            raise StreamError(f"all {self.slots} slots are taken; let a stream leave first, or run more slots")
        prompt = np.asarray(prompt, np.int64).reshape(-1)  # (P,)
        if len(prompt) and not (0 <= prompt.min() and prompt.max() < info.vocab_size):
            raise StreamError(f"a prompt token is outside 0..{info.vocab_size - 1}")
        limit = info.max_length or np.iinfo(np.int64).max
        if info.features:
            if features is None:
                raise StreamError("this model is a vocoder: give each stream its features (frames, mel bins)")
            features = np.asarray(features, np.float32)
            if features.ndim != 2 or features.shape[1] != info.features.n_mels or not len(features):
                raise StreamError(f"features must be (frames, {info.features.n_mels}), got {features.shape}")
            limit = min(limit, len(features) * info.features.hop)
        elif features is not None:
            raise StreamError("this model is not a vocoder and takes no features")
        if len(prompt) >= limit:
            raise StreamError(f"the prompt has {len(prompt)} elements and a stream may take {limit}; give at most "
                              f"{limit - 1} so at least one can be generated")
        condition = info.unconditioned if condition is None else condition
        if info.num_classes and not (condition is not None and 0 <= condition < info.num_classes):
            raise StreamError(f"this model is conditioned on {info.num_classes} classes; join with a condition "
                              f"0..{info.num_classes - 1}, got {condition}")
        if not info.num_classes and condition is not None:
            raise StreamError("this model is unconditional; join without a condition")
        slot = free[0]
        self._stepper.reset_rows(np.array([slot]), None if condition is None else np.array([condition]),
                                 None if features is None else features[None])
        if len(prompt) + 1 > self._inputs.shape[1]:
            grown = np.full((self.slots, len(prompt) + 1), info.start_token, np.int64)
            grown[:, :self._inputs.shape[1]] = self._inputs
            self._inputs = grown
        self._inputs[slot, 1:len(prompt) + 1] = prompt
        self._forced[slot] = len(prompt) + 1
        self.position[slot], self._limit[slot], self.running[slot] = 0, limit, True
        self.sampling[slot] = False
        return slot

    def leave(self, slot: int) -> None:
        """End the stream in ``slot``; the slot is free for the next join."""
        if not (0 <= slot < self.slots and self.running[slot]):
            raise StreamError(f"slot {slot} has no stream (it left already, or never joined); leave each stream once")
        self.running[slot] = self.sampling[slot] = False
        self.position[slot] = 0

    def step(self, tokens: np.ndarray | None = None) -> np.ndarray:
        """One element for every running stream -> outputs (slots, W), a view the next step overwrites.
        tokens (slots,) int64: for each slot in ``sampling`` after the last step, the element drawn from its
        row of the last outputs (the other entries are not read, but the shape is checked whenever tokens are
        given). StreamError for tokens of another shape or not integers, or a sampling slot's outside 0..V-1."""
        at_end = self.running & (self.position >= self._limit)
        if at_end.any():
            slot = int(np.flatnonzero(at_end)[0])
            raise StreamError(f"the stream in slot {slot} has taken all {self._limit[slot]} positions it may; "
                              "let it leave")
        forced = self.position < self._forced  # (slots,) the start symbol, or inside the prompt
        index = np.minimum(self.position, self._inputs.shape[1] - 1)
        self._feed[:] = self._inputs[np.arange(self.slots), index]
        take = self.running & ~forced
        if tokens is not None or take.any():
            self._feed[take] = self._drawn(tokens, take)[take]
        self._stepped[:] = np.where(self.running, self.position, 0)  # free slots idle at position 0
        outputs = self._stepper.step(self._feed, self._stepped)
        self.sampling[:] = self.running & (self.position + 1 >= self._forced)  # output at position >= P
        self.position += self.running
        return outputs

    def _drawn(self, tokens, take: np.ndarray) -> np.ndarray:
        """``step``'s tokens checked: one integer per slot, a level 0..V-1 in each slot of ``take`` (slots,) bool."""
        shape = None if tokens is None else np.shape(tokens)
        if shape != (self.slots,):
            raise StreamError(f"step takes one token per slot, an int64 array of shape ({self.slots},) holding the "
                              f"element each sampling slot drew, got {'none' if tokens is None else shape}; pass "
                              f"np.zeros({self.slots}, np.int64) with the sampling slots' draws set")
        tokens = np.asarray(tokens)
        if not np.issubdtype(tokens.dtype, np.integer):
            raise StreamError(f"step takes integer tokens (levels 0..{self.info.vocab_size - 1}), got {tokens.dtype}; "
                              "pass the levels drawn, not the outputs")
        bad = take & ((tokens < 0) | (tokens >= self.info.vocab_size))
        if bad.any():
            slot = int(np.flatnonzero(bad)[0])
            raise StreamError(f"the token for slot {slot} is {int(tokens[slot])}, outside the levels "
                              f"0..{self.info.vocab_size - 1}; pass the level drawn from its outputs")
        return tokens
