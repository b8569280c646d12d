"""Out-of-tree families that break the protocol (docs/families.md), each in one way, for the hostile suite:
``tiny_family.Decay`` (a decaying sum of embeddings) with one member wrong. Each is found by its import path
(``broken_families:StepRaises``, the tests folder being on ``sys.path``) or through an entry point, and
``artrain``/``arexport`` must answer each with one line naming the family and what to fix.

``checkpoint(cls, folder)`` saves a checkpoint of a broken family the way ``artrain fit`` does, without
training it (its forward may be fine while its step is not: only arexport reaches the step)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from tiny_family import Decay, DecayConfig

ALPHABET = "abcdefgh .\n"  # the 11 levels of DecayConfig's default vocab_size


class StepRaises(Decay):
    """Its step raises, as a family with a bug in it would."""
    family = "broken_step_raises"

    def step(self, token, pos, state, cond=None):
        raise ValueError("the decay factor is not set")


class StepWrongShape(Decay):
    """Its step returns (B, V + 1) logits, one more than the vocabulary it declares."""
    family = "broken_step_shape"

    def step(self, token, pos, state, cond=None):
        logits, new_state = super().step(token, pos, state, cond)  # (B, V)
        return torch.cat([logits, logits[:, :1]], dim=1), new_state  # (B, V + 1)


class StateNotReturned(Decay):
    """Declares the state ``h`` but returns its new value under another name."""
    family = "broken_state_missing"

    def step(self, token, pos, state, cond=None):
        logits, new_state = super().step(token, pos, state, cond)
        return logits, {"hidden": new_state["h"]}


class StateUndeclared(Decay):
    """Returns a state ``count`` beside ``h`` that its ``state_spec`` does not declare."""
    family = "broken_state_undeclared"

    def step(self, token, pos, state, cond=None):
        logits, new_state = super().step(token, pos, state, cond)
        return logits, {**new_state, "count": torch.ones_like(token)}


class ForwardRaises(Decay):
    """Its forward (what training and eval run) raises."""
    family = "broken_forward_raises"

    def forward(self, x, cond=None):
        raise RuntimeError("the kernel is not compiled")


class ForwardWrongShape(Decay):
    """Its forward returns one output fewer per element than its head's width."""
    family = "broken_forward_shape"

    def forward(self, x, cond=None):
        return super().forward(x, cond)[..., 1:]  # (B, T, V - 1)


def checkpoint(cls: type[Decay], folder: Path | str) -> str:
    """A checkpoint of ``cls`` (random weights) in ``folder``, as `artrain fit` writes it -> the folder."""
    from artrain.checkpoint import DataInfo, save_checkpoint
    from artrain.models import family_fields

    torch.manual_seed(0)
    model = cls(DecayConfig(vocab_size=len(ALPHABET)))
    data = DataInfo(name="my-text.txt", kind="text", levels=len(ALPHABET), alphabet=ALPHABET)
    save_checkpoint(Path(folder), model, {"format_version": 1, **family_fields(cls), "model": asdict(model.config),
                                          "data": asdict(data), "train": {}, "step": 0, "eval": None})
    return str(folder)
