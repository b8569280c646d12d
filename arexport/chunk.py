"""The chunk graph: a model's step rolled N times inside one ONNX ``Loop``, sampling as it goes.

    chunk(input_ids (B,), position (B,) int64, [condition (B,)], [features (B, F, M)], uniforms (B, N) float64,
          *state) -> tokens (B, N) int64, *state

One call makes N elements per row with no Python, numpy or onnxruntime call overhead between them. Row b's
elements are at positions position[b] .. position[b] + N - 1 (rows are independent, each at its own position).
The loop body is the traced ``SamplingStep``: the model's ``step`` at position + i, then the inverse-CDF draw of
``arrun.sampling.sample_categorical`` at uniforms[:, i], in float64, so a seed gives the samples of the step
loop. A locally conditioned model turns its frames into conditioning vectors once per chunk, before the loop,
and each element takes its own frame's vector. The features are per row, each row's starting at its own
position: features[b, f] is frame position[b] // hop + f of row b's stream (the frame of that row's samples
(position[b] // hop + f) * hop ...), so row b's element i takes features[b, (position[b] % hop + i) // hop]; F
must cover every row, F >= (max_b position[b] % hop + N - 1) // hop + 1 (a row needing fewer frames is padded
with any finite values).

Graph surgery: the traced body's inputs that stay the same for the whole chunk (position, condition, the
frame vectors, uniforms) become references to the outer graph, its weights move to the outer graph, and
every other name in it gets the prefix ``loop/`` so nothing shadows an outer name. Then every body node that
computes only from outer values (the batch's row indices, each row's base in the flat state: onnxruntime runs
every node of a body on every element, and at batch 1 a node's cost is mostly its overhead) moves before the
Loop; a Shape of the token, the state or a row reads it from the outer value, whose shape is the same.
"""
from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from artrain.models import ARModel
from arrun.contract.schema import (BATCH_DIM, CONDITION_INPUT, FEATURES_INPUT, POSITION_INPUT, TOKEN_INPUT,
                                   TOKENS_OUTPUT, UNIFORMS_INPUT, ModelInfo)

from .tracing import trace

_VECTORS = "frame_vectors"  # the outer value holding the conditioning vectors of the chunk's frames (B, F, D)
_SAMPLE_VECTORS = "sample_vectors"  # the vector of each element's frame (B, N, D)
_ROWS = {_SAMPLE_VECTORS: "row_vector", UNIFORMS_INPUT: "row_uniform"}  # outer (B, N, ...) -> the body's row i
_PREFIX = "loop/"


def sample_inverse_cdf(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """logits (B, V) float32, u (B,) float64 in [0, 1) -> (B,) int64: the first index whose cumulative mass
    exceeds u * total, in float64 (``arrun.sampling.sample_categorical``). total * (1 - 2^-53) is
    nextafter(total, 0) for every normal positive total, the largest target below it."""
    x = logits.double()
    cdf = torch.cumsum(torch.exp(x - x.amax(dim=-1, keepdim=True)), dim=-1)  # (B, V)
    total = cdf[:, -1]  # (B,)
    below = torch.tensor(1 - 2.0**-53, dtype=torch.float64)  # a float64 constant: a Python float would be float32
    target = torch.minimum(u * total, total * below)  # (B,)
    return (cdf <= target[:, None]).long().sum(dim=-1)


class SamplingStep(nn.Module):
    """forward(i, token, *state, position (B,), [condition], [vector (B, D)], uniform (B,)) -> (next token, *state):
    one loop iteration, given its element's conditioning vector and uniform (gathered by the loop body)."""

    def __init__(self, model: ARModel, info: ModelInfo):
        super().__init__()
        self.model, self.names = model, [s.name for s in info.state]
        self.conditional, self.local = info.num_classes > 0, bool(info.features)

    def forward(self, *inputs):
        i, token, rest = inputs[0], inputs[1], inputs[2:]
        state, (position, *outer) = rest[:len(self.names)], rest[len(self.names):]
        cond = outer.pop(0) if self.conditional else None
        local = {"features": outer.pop(0)} if self.local else {}  # (B, D)
        uniform = outer[0]  # (B,)
        logits, new_state = self.model.step(token, position + i, dict(zip(self.names, state)), cond, **local)
        return (sample_inverse_cdf(logits, uniform), *(new_state[name] for name in self.names))


class FrameVectors(nn.Module):
    def __init__(self, model: ARModel):
        super().__init__()
        self.model = model

    def forward(self, features):
        return self.model.frame_vectors(features)


def chunk_graph(model: ARModel, info: ModelInfo) -> onnx.ModelProto:
    """The chunk graph of ``model`` (its metadata is ``info``, graph 'chunk') at ``info.opset``."""
    B, batch = 2, torch.export.Dim(BATCH_DIM, min=1, max=4096)
    frames = torch.export.Dim("frames", min=1)
    state = model.init_state(B)
    outer_names = [POSITION_INPUT] + [CONDITION_INPUT] * (info.num_classes > 0)
    outer_names += [_ROWS[_SAMPLE_VECTORS]] * bool(info.features) + [_ROWS[UNIFORMS_INPUT]]
    outer = [torch.arange(B)] + [torch.zeros(B, dtype=torch.long)] * (info.num_classes > 0)  # rows apart
    outer_shapes = [{0: batch}] + [{0: batch}] * (info.num_classes > 0)
    if info.features:
        example = model.frame_vectors(torch.zeros(1, info.features.n_mels))  # (1, D), the family's dtype
        outer.append(torch.zeros(B, example.shape[-1], dtype=example.dtype))
        outer_shapes.append({0: batch})
    outer.append(torch.full((B,), 0.5, dtype=torch.float64))
    outer_shapes.append({0: batch})
    state_in = [f"{_PREFIX}{s.input}" for s in info.state]
    args = (torch.tensor(0), torch.full((B,), info.start_token), *(state[s.name] for s in info.state), *outer)
    shapes = (None, {0: batch}, *[{0: batch}] * len(info.state), *outer_shapes)
    step = trace(SamplingStep(model, info), args, (shapes,), ["i", "token", *state_in, *outer_names],
                 ["next_token", *[f"{_PREFIX}{s.output}" for s in info.state]], info.opset,
                 f"the {info.family} chunk graph's step")
    initializers = list(step.graph.initializer)
    nodes = [helper.make_node("Shape", [UNIFORMS_INPUT], ["chunk/n1"], start=1, end=2),
             helper.make_node("Squeeze", ["chunk/n1"], ["chunk/n"])]  # () elements in the chunk
    if info.features:
        vectors = trace(FrameVectors(model), (torch.zeros(B, 3, info.features.n_mels),), ({0: batch, 1: frames},),
                        [FEATURES_INPUT], [_VECTORS], info.opset, f"the {info.family} conditioning")
        _prefix_names(vectors.graph, "frames/", keep={FEATURES_INPUT, _VECTORS})
        nodes += vectors.graph.node
        initializers += vectors.graph.initializer
        hop = info.features.hop
        initializers += [onnx.numpy_helper.from_array(np.array(v, np.int64), f"chunk/{v}") for v in sorted({0, 1, hop})]
        initializers += [onnx.numpy_helper.from_array(np.array(v, np.int64), f"chunk/axes{v}") for v in ([1], [2])]
        nodes += [  # rows (B, N) = (arange(N) + position % hop) // hop: each element's frame in its row's frames
            helper.make_node("Mod", [POSITION_INPUT, f"chunk/{hop}"], ["chunk/offset"]),  # (B,)
            helper.make_node("Unsqueeze", ["chunk/offset", "chunk/axes[1]"], ["chunk/offsets"]),  # (B, 1)
            helper.make_node("Range", ["chunk/0", "chunk/n", "chunk/1"], ["chunk/i"]),  # (N,)
            helper.make_node("Add", ["chunk/offsets", "chunk/i"], ["chunk/shifted"]),  # (B, N)
            helper.make_node("Div", ["chunk/shifted", f"chunk/{hop}"], ["chunk/rows"]),
            helper.make_node("Unsqueeze", ["chunk/rows", "chunk/axes[2]"], ["chunk/indices"]),  # (B, N, 1)
            helper.make_node("GatherND", [_VECTORS, "chunk/indices"], [_SAMPLE_VECTORS], batch_dims=1),  # (B, N, D)
        ]
    outer = set(outer_names) | {t.name for t in initializers}
    body = _loop_body(step.graph, outer, {row: whole for whole, row in _ROWS.items() if row in outer_names})
    made_before = {value for node in nodes for value in node.output}  # (the frame vectors, the chunk's length)
    graph_inputs = {TOKEN_INPUT, POSITION_INPUT, CONDITION_INPUT, FEATURES_INPUT, UNIFORMS_INPUT}
    graph_inputs |= {s.input for s in info.state}  # (a Shape of the state reads in.X)
    nodes += _hoist_invariants(body, (outer - set(_ROWS.values())) | made_before | graph_inputs)
    nodes += [
        helper.make_node("Loop", ["chunk/n", "", TOKEN_INPUT, *(s.input for s in info.state)],
                         ["chunk/last", *(s.output for s in info.state), "chunk/tokens"], body=body),
        helper.make_node("Transpose", ["chunk/tokens"], [TOKENS_OUTPUT], perm=[1, 0]),  # (N, B) -> (B, N)
    ]
    values = {v.name: v for v in step.graph.input}
    inputs = [helper.make_tensor_value_info(TOKEN_INPUT, TensorProto.INT64, [BATCH_DIM]),
              helper.make_tensor_value_info(POSITION_INPUT, TensorProto.INT64, [BATCH_DIM])]
    if info.num_classes:
        inputs.append(helper.make_tensor_value_info(CONDITION_INPUT, TensorProto.INT64, [BATCH_DIM]))
    if info.features:
        inputs.append(helper.make_tensor_value_info(FEATURES_INPUT, TensorProto.FLOAT,
                                                    [BATCH_DIM, "frames", info.features.n_mels]))
    inputs.append(helper.make_tensor_value_info(UNIFORMS_INPUT, TensorProto.DOUBLE, [BATCH_DIM, "n"]))
    for s in info.state:
        inputs.append(_renamed(values[f"{_PREFIX}{s.input}"], s.input))
    outputs = [helper.make_tensor_value_info(TOKENS_OUTPUT, TensorProto.INT64, [BATCH_DIM, "n"])]
    outputs += [_renamed(values[f"{_PREFIX}{s.input}"], s.output) for s in info.state]
    graph = helper.make_graph(nodes, "chunk", inputs, outputs, initializers)
    proto = helper.make_model(graph, opset_imports=list(step.opset_import))
    proto.ir_version = step.ir_version
    proto.producer_name, proto.producer_version = step.producer_name, step.producer_version
    return proto


def _prefix_names(graph: onnx.GraphProto, prefix: str, keep: set[str]) -> None:
    """Rename every value of ``graph`` (nodes, initializers) but those in ``keep`` to prefix + name, in place."""
    def name(value: str) -> str:
        return value if not value or value in keep else prefix + value

    for node in graph.node:
        node.input[:] = [name(v) for v in node.input]
        node.output[:] = [name(v) for v in node.output]
    for tensor in graph.initializer:
        tensor.name = name(tensor.name)


def _renamed(value: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    """The value under ``name``, its first dimension (if any) the batch."""
    copy = onnx.ValueInfoProto()
    copy.CopyFrom(value)
    copy.name = name
    dims = copy.type.tensor_type.shape.dim
    if dims:
        dims[0].Clear()
        dims[0].dim_param = BATCH_DIM
    return copy


def _loop_body(graph: onnx.GraphProto, outer: set[str], rows: dict[str, str]) -> onnx.GraphProto:
    """The traced step (inputs i, token, *state, *outer; outputs next_token, *state) -> a Loop body with inputs
    (i, cond, token, *state) and outputs (cond, next_token, *state, next_token as the scan output). ``rows``:
    traced inputs the body makes itself, as row i of an outer (B, N, ...) value (a scalar index: one Gather)."""
    def name(value: str) -> str:
        return value if not value or value in outer else _PREFIX + value.removeprefix(_PREFIX)

    nodes = [helper.make_node("Gather", [whole, name("i")], [row], axis=1) for row, whole in rows.items()]
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in graph.input}
    # the token and the state keep their shapes from element to element: those of their outer initial values
    same_shape = {name("token"): TOKEN_INPUT} | {v.name: v.name.removeprefix(_PREFIX)
                                                 for v in graph.input if v.name.startswith(_PREFIX)}
    for node in graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ValueError(f"the traced step has a {node.op_type} with a subgraph; a chunk graph cannot hold it")
        if node.op_type == "Shape" and node.input[0] in rows:  # a row's shape, read from its outer value
            nodes += _row_shape(node, rows[node.input[0]], ranks[node.input[0]], name(node.output[0]))
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [name(v) for v in node.input]
        if node.op_type == "Shape" and copy.input[0] in same_shape:  # read from the outer value, out of the loop
            copy.input[0] = same_shape[copy.input[0]]
        copy.output[:] = [name(v) for v in node.output]
        nodes.append(copy)
    carried = [v for v in graph.input if v.name not in outer]  # i, token, *state
    inputs = []
    for v in carried:
        inputs.append(_renamed(v, name(v.name)))
        if v.name == "i":
            inputs.append(helper.make_tensor_value_info(f"{_PREFIX}cond", TensorProto.BOOL, []))
    outputs = [helper.make_tensor_value_info(f"{_PREFIX}cond", TensorProto.BOOL, [])]  # passed through
    outputs += [_plain(v, name(v.name)) for v in graph.output]
    outputs.append(helper.make_tensor_value_info(f"{_PREFIX}scan_token", TensorProto.INT64, None))
    nodes.append(helper.make_node("Identity", [name("next_token")], [f"{_PREFIX}scan_token"]))
    return helper.make_graph(nodes, "step", inputs, outputs)


def _plain(value: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    """The value's element type under ``name``, its shape left to inference."""
    return helper.make_tensor_value_info(name, value.type.tensor_type.elem_type, None)


def _row_shape(shape: onnx.NodeProto, whole: str, rank: int, output: str) -> list[onnx.NodeProto]:
    """``shape`` (Shape of a row, rank ``rank``, of the outer (B, N, ...) value ``whole``, with its start and
    end) -> the same dimensions read from ``whole`` (its axes but axis 1), which does not change in the loop, so
    the nodes computing from it (the batch size and the row indices) move out of the loop."""
    attrs = {a.name: a.i for a in shape.attribute}
    axes = [0, *range(2, rank + 1)][attrs.get("start", 0):attrs.get("end", rank)]  # the row's dims in whole's
    indices = onnx.numpy_helper.from_array(np.array(axes, np.int64))
    return [helper.make_node("Shape", [whole], [f"{output}/whole"]),
            helper.make_node("Constant", [], [f"{output}/axes"], value=indices),
            helper.make_node("Gather", [f"{output}/whole", f"{output}/axes"], [output])]


def _hoist_invariants(body: onnx.GraphProto, outer: set[str]) -> list[onnx.NodeProto]:
    """Remove from ``body`` (in place) the nodes that compute only from ``outer`` values and each other (the
    loop-invariant ones: a row's base in the flat state, the batch's indices, ...) and return them, in order,
    for the outer graph: onnxruntime runs every node of a Loop body on every iteration, and a small node costs
    about as much as a big one. A node feeding a body output directly stays (a body output is made in it)."""
    invariant, hoisted, kept = set(outer), [], []
    outputs = {v.name for v in body.output}
    for node in body.node:
        if all(not v or v in invariant for v in node.input) and not outputs & set(node.output):
            node.name = f"{_PREFIX}{node.name}" if node.name else ""  # unique among the outer graph's nodes
            hoisted.append(node)
            invariant.update(node.output)
        else:
            kept.append(node)
    del body.node[:]
    body.node.extend(kept)
    return hoisted
