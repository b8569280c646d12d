"""The graph kinds ``arexport onnx --graph`` writes, one entry each in ``GRAPHS``.

An entry names the kind's builder (``model``, ``info`` -> the traced ModelProto, metadata set afterwards by
the exporter) and what it asks of a family: a family exports the kinds it declares in ``ARModel.graph_kinds``.
A new graph kind is its own module (a wrapper ``nn.Module`` over the model, traced with ``tracing.trace``)
plus one ``GRAPHS.register`` line here; ``arrun.contract.schema.GRAPH_IO`` describes the kinds the contract
knows, and arrun's runtime must know how to drive it (docs/families.md lists the files).

Graphs (B = batch, dynamic in every graph; V = vocabulary size):
- step: ``input_ids`` (B,) int64 [+ ``position`` (B,) int64] [+ ``condition`` (B,) int64] [+ ``features``
  (B, M)] + one input per state tensor -> ``logits`` (B, V) float32 + one output per state tensor with its
  input's shape and dtype, fed straight back; a model whose step takes chunks (``ARModel.step_tokens`` S > 1:
  the windowed Transformer) has ``input_ids`` (B, s) and ``logits`` (B, s, V), 1 <= s <= S. ``position`` is
  there when the model's step reads it (``ARModel.uses_position``): row b's (first) element is at position[b],
  the rows independent of each other (format 6).
- full: ``input_ids`` (B, T) int64 [+ ``condition`` (B,)] [+ ``features`` (B, F, M)] -> ``logits`` (B, T, V),
  logits[:, t] predicting x_t from x_<t; T is dynamic up to the model's maximum length (or unbounded), or
  fixed where the model fixes it (``ARModel.fixed_length``: an image's H*W).
- chunk: the step rolled N times inside ONNX ``Loop``s, sampling as it goes (``chunk.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import onnx
import torch
from torch import nn

from artrain.models import ARModel
from arrun.contract.registry import Registry
from arrun.contract.schema import BATCH_DIM, ModelInfo

from .chunk import chunk_graph
from .tracing import trace

EXAMPLE_BATCH = 2  # export traces batch 2, so batch 1 and 3 in verification are sizes it never saw


@dataclass(frozen=True)
class GraphKind:
    """One kind of exported graph: how it is built and what it asks of the model. Its inputs and outputs are
    the contract's (``arrun.contract.schema.GRAPH_IO``: whether it carries state, takes whole sequences or
    samples inside)."""
    name: str
    build: Callable[[ARModel, ModelInfo], onnx.ModelProto]  # the traced graph, without the metadata
    needs: str               # what a family declaring it in ``graph_kinds`` provides (the refusal message)
    prefill: bool = False    # takes up to ``ARModel.step_tokens`` elements per call


class StepGraph(nn.Module):
    """forward(input_ids, [position], [condition], [features (B, M)], *state_in) -> (logits, *state_out), state
    in spec order; the frame's conditioning vector is computed in the graph."""

    def __init__(self, model: ARModel, info: ModelInfo):
        super().__init__()
        self.model, self.names = model, [s.name for s in info.state]
        self.uses_position, self.conditional, self.local = info.uses_position, info.num_classes > 0, bool(info.features)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        token, rest = inputs[0], list(inputs[1:])
        pos = rest.pop(0) if self.uses_position else None
        cond = rest.pop(0) if self.conditional else None
        local = {"features": self.model.frame_vectors(rest.pop(0))} if self.local else {}
        logits, new_state = self.model.step(token, pos, dict(zip(self.names, rest)), cond, **local)
        return (logits, *(new_state[name] for name in self.names))


class FullGraph(nn.Module):
    """forward(input_ids (B, T), [condition (B,)], [features (B, F, M)]) -> logits (B, T, V)."""

    def __init__(self, model: ARModel, info: ModelInfo):
        super().__init__()
        self.model, self.conditional, self.local = model, info.num_classes > 0, bool(info.features)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        cond = inputs[1] if self.conditional else None
        local = {"features": inputs[-1]} if self.local else {}
        return self.model.sequence_logits(inputs[0], cond, **local)


def _batch() -> torch.export.Dim:
    return torch.export.Dim(BATCH_DIM, min=1, max=4096)


def _conditions(info: ModelInfo, frames: bool) -> tuple[list, list]:
    """Example condition [and features: (B, M) per step, (B, F, M) with ``frames``] and their dynamic shapes."""
    B, batch = EXAMPLE_BATCH, _batch()
    cond = [torch.zeros(B, dtype=torch.long)] if info.num_classes else []
    shapes = [{0: batch}] * len(cond)
    if info.features:
        cond.append(torch.zeros(B, 3, info.features.n_mels) if frames else torch.zeros(B, info.features.n_mels))
        shapes.append({0: batch, 1: torch.export.Dim("frames", min=1)} if frames else {0: batch})
    return cond, shapes


def step_graph(model: ARModel, info: ModelInfo) -> onnx.ModelProto:
    """The step graph traced at batch EXAMPLE_BATCH from the initial state, batch dynamic."""
    B, batch = EXAMPLE_BATCH, _batch()
    cond, cond_shapes = _conditions(info, frames=False)
    state = model.init_state(B)
    pos = [torch.arange(B, dtype=torch.long)] if info.uses_position else []  # (B,) rows at different positions
    if info.step_tokens > 1:  # prefill: (B, s) elements per call, 1 <= s <= step_tokens
        tokens = torch.full((B, 2), info.start_token)
        token_shape = {0: batch, 1: torch.export.Dim("step_tokens", min=1, max=info.step_tokens)}
    else:
        tokens, token_shape = torch.full((B,), info.start_token), {0: batch}
    args = (tokens, *pos, *cond, *(state[s.name] for s in info.state))
    shapes = (token_shape, *[{0: batch}] * len(pos), *cond_shapes, *[{0: batch}] * len(info.state))
    return trace(StepGraph(model, info), args, (shapes,), info.input_names(), info.output_names(), info.opset,
                 f"the {info.family} step graph")


def full_graph(model: ARModel, info: ModelInfo) -> onnx.ModelProto:
    """The full graph traced at batch EXAMPLE_BATCH, its length dynamic unless the model fixes it (an image's
    H*W; a dynamic dim needs an example of size >= 2)."""
    B, batch = EXAMPLE_BATCH, _batch()
    cond, cond_shapes = _conditions(info, frames=True)
    if model.fixed_length:
        tokens, length = torch.zeros(B, model.fixed_length, dtype=torch.long), {0: batch}
    else:
        bound = {"max": info.max_length} if info.max_length else {}
        T = min(3, info.max_length or 3)
        tokens = torch.zeros(B, T, dtype=torch.long)
        length = {0: batch, 1: torch.export.Dim("length", min=1, **bound)} if T >= 2 else {0: batch}
    return trace(FullGraph(model, info), (tokens, *cond), ((length, *cond_shapes),), info.input_names(),
                 info.output_names(), info.opset, f"the {info.family} full graph")


GRAPHS: Registry[GraphKind] = Registry("arexport.graph_kinds", "graph kind")
GRAPHS.register("step", GraphKind("step", step_graph, "steps one element (or a prefill chunk) with explicit state",
                                   prefill=True))
GRAPHS.register("full", GraphKind("full", full_graph, "runs the parallel forward over a whole sequence"))
GRAPHS.register("chunk", GraphKind("chunk", chunk_graph, "rolls the one-element step of a sequence model of any "
                                   "length (a WaveNet)"))
