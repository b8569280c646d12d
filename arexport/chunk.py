"""The chunk graph: a model's step rolled N times inside ONNX ``Loop``s, sampling as it goes.

    chunk(input_ids (B,), position (B,) int64, [condition (B,)], [features (B, F, M)], uniforms (B, N) float64,
          *state) -> tokens (B, N) int64, *state

One call makes N elements per row with no Python, numpy or onnxruntime call overhead between them. Row b's
elements are at positions position[b] .. position[b] + N - 1 (rows are independent, each at its own position).
An element is the model's ``step`` at position + i, then the inverse-CDF draw of
``arrun.sampling.sample_categorical`` at uniforms[:, i], in float64, so a seed gives the samples of the step
loop. A family with ``chunk_block`` M > 0 has a first Loop of N // M iterations whose body is its ``roll`` of M
elements unrolled (``BlockStep``: WaveNet reads and writes its ring once per block); then, for every family, a
Loop of the remaining elements (all N without blocks) whose body is one element (``SamplingStep``). A locally
conditioned model turns its frames into conditioning vectors once per chunk, before the loops, and each
element takes its own frame's vector. The features are per row, each row's starting at its own position:
features[b, f] is frame position[b] // hop + f of row b's stream (the frame of that row's samples
(position[b] // hop + f) * hop ...), so row b's element i takes features[b, (position[b] % hop + i) // hop]; F
must cover every row, F >= (max_b position[b] % hop + N - 1) // hop + 1 (a row needing fewer frames is padded
with any finite values).

Graph surgery: a traced body's inputs that stay the same for the whole chunk (position, condition, the
frame vectors, uniforms) become references to the outer graph, its weights move to the outer graph (equal
weights of the two traces kept once), and every other name in it gets the prefix ``block/`` or ``loop/`` so
nothing shadows an outer name. Then every body node that computes only from outer values (the batch's row
indices, each row's base in the flat state: onnxruntime runs every node of a body on every iteration, and at
batch 1 a node's cost is mostly its overhead) moves before its Loop; a Shape of the token, the state or a row
reads it from the outer value, whose shape is the same.
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
_PREFIX = "loop/"
BATCH = torch.export.Dim(BATCH_DIM, min=1, max=4096)  # the traced graphs' batch dimension


def sample_inverse_cdf(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """logits (B, V) float32, u (B,) float64 in [0, 1) -> (B,) int64: the first index whose cumulative mass
    exceeds u * total, in float64 (``arrun.sampling.sample_categorical``)."""
    return draw(logits, below_one(u)[:, None])


def below_one(u: torch.Tensor) -> torch.Tensor:
    """Uniforms in [0, 1) -> min(u, 1 - 2^-53). u * total for the clamped u is min(u * total, total * (1 - 2^-53))
    exactly (rounding is monotonic), and total * (1 - 2^-53) is nextafter(total, 0) for every normal positive
    total, the largest target below it: a block clamps its uniforms once, not once per element."""
    return torch.minimum(u, torch.tensor(1 - 2.0**-53, dtype=torch.float64))  # (a Python float would be float32)


def draw(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """logits (B, V) float32, u (B, 1) float64 from ``below_one`` -> (B,) int64, as ``sample_inverse_cdf``."""
    x = logits.double()
    cdf = torch.cumsum(torch.exp(x - x.amax(dim=-1, keepdim=True)), dim=-1)  # (B, V)
    return (cdf <= u * cdf[:, -1:]).long().sum(dim=-1)


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


class BlockStep(nn.Module):
    """forward(j, token, *state, position (B,), [condition], [vectors (B, M, D)], uniforms (B, M)) -> (last token,
    *state, tokens (B, M)): block j of M elements, at position + j*M, by the model's ``roll``, each element drawn as
    ``SamplingStep`` draws it."""

    def __init__(self, model: ARModel, info: ModelInfo, block: int):
        super().__init__()
        self.model, self.names, self.block = model, [s.name for s in info.state], block
        self.conditional, self.local = info.num_classes > 0, bool(info.features)

    def forward(self, *inputs):
        j, token, rest = inputs[0], inputs[1], inputs[2:]
        state, (position, *outer) = rest[:len(self.names)], rest[len(self.names):]
        cond = outer.pop(0) if self.conditional else None
        vectors = outer.pop(0) if self.local else None  # (B, M, D)
        uniforms = below_one(outer[0]).split(1, dim=1)  # M x (B, 1)
        tokens, new_state = self.model.roll(token, position + j * self.block, dict(zip(self.names, state)),
                                            lambda logits, e: draw(logits, uniforms[e]), self.block, cond, vectors)
        return (tokens[:, -1], *(new_state[name] for name in self.names), tokens)


class FrameVectors(nn.Module):
    def __init__(self, model: ARModel):
        super().__init__()
        self.model = model

    def forward(self, features):
        return self.model.frame_vectors(features)


def chunk_graph(model: ARModel, info: ModelInfo) -> onnx.ModelProto:
    """The chunk graph of ``model`` (its metadata is ``info``, graph 'chunk') at ``info.opset``."""
    initializers, vector = [], torch.zeros(1, 0)  # an example frame vector (1, D), D = 0 without features
    nodes = [helper.make_node("Shape", [UNIFORMS_INPUT], ["chunk/n1"], start=1, end=2),
             helper.make_node("Squeeze", ["chunk/n1"], ["chunk/n"])]  # () elements in the chunk
    if info.features:
        frames = torch.export.Dim("frames", min=1)
        vectors = trace(FrameVectors(model), (torch.zeros(2, 3, info.features.n_mels),), ({0: BATCH, 1: frames},),
                        [FEATURES_INPUT], [_VECTORS], info.opset, f"the {info.family} conditioning")
        _prefix_names(vectors.graph, "frames/", keep={FEATURES_INPUT, _VECTORS})
        nodes += vectors.graph.node
        initializers += vectors.graph.initializer
        vector = model.frame_vectors(torch.zeros(1, info.features.n_mels))  # (1, D) in the family's dtype
        hop = info.features.hop
        initializers += [_int64(v, f"chunk/{v}") for v in sorted({0, 1, hop})]
        initializers += [_int64(v, f"chunk/axes{v}") for v in ([1], [2])]
        nodes += [  # rows (B, N) = (arange(N) + position % hop) // hop: each element's frame in its row's frames
            helper.make_node("Mod", [POSITION_INPUT, f"chunk/{hop}"], ["chunk/offset"]),  # (B,)
            helper.make_node("Unsqueeze", ["chunk/offset", "chunk/axes[1]"], ["chunk/offsets"]),  # (B, 1)
            helper.make_node("Range", ["chunk/0", "chunk/n", "chunk/1"], ["chunk/i"]),  # (N,)
            helper.make_node("Add", ["chunk/offsets", "chunk/i"], ["chunk/shifted"]),  # (B, N)
            helper.make_node("Div", ["chunk/shifted", f"chunk/{hop}"], ["chunk/rows"]),
            helper.make_node("Unsqueeze", ["chunk/rows", "chunk/axes[2]"], ["chunk/indices"]),  # (B, N, 1)
            helper.make_node("GatherND", [_VECTORS, "chunk/indices"], [_SAMPLE_VECTORS], batch_dims=1),  # (B, N, D)
        ]
    graph_inputs = {TOKEN_INPUT, POSITION_INPUT, CONDITION_INPUT, FEATURES_INPUT, UNIFORMS_INPUT}
    graph_inputs |= {s.input for s in info.state}  # (a Shape of the state reads in.X)
    carried, pieces = [TOKEN_INPUT, *(s.input for s in info.state)], []
    element = {POSITION_INPUT: POSITION_INPUT, UNIFORMS_INPUT: UNIFORMS_INPUT, _SAMPLE_VECTORS: _SAMPLE_VECTORS}
    if model.chunk_block:  # the blocks of M elements first, then the last N % M one at a time
        block_nodes, block_weights, carried = _block_loop(model, info, vector, carried, _outputs(nodes) | graph_inputs)
        nodes += block_nodes
        initializers += block_weights
        pieces.append("blocks/flat")
        element = {POSITION_INPUT: "rest/position", UNIFORMS_INPUT: "rest/uniforms", _SAMPLE_VECTORS: "rest/vectors"}
    example = {"position": (element[POSITION_INPUT], torch.arange(2), {0: BATCH}),
               "vectors": ("row_vector", vector.new_zeros(2, vector.shape[-1]), {0: BATCH}),
               "uniforms": ("row_uniform", torch.full((2,), 0.5, dtype=torch.float64), {0: BATCH})}
    step, body, hoisted = _traced_body(SamplingStep(model, info), model, info, example, _PREFIX,
                                       {"row_vector": element[_SAMPLE_VECTORS], "row_uniform": element[UNIFORMS_INPUT]},
                                       _outputs(nodes) | graph_inputs)
    nodes += hoisted
    initializers += step.graph.initializer
    count = "chunk/rest" if model.chunk_block else "chunk/n"
    nodes.append(helper.make_node("Loop", [count, "", *carried],
                                  ["chunk/last", *(s.output for s in info.state), "chunk/tokens"], body=body))
    if pieces:  # (rest, B) -> (B, rest), shaped first: after no iteration a scan output's shape is the runtime's
        # choice (rank 1 on onnxruntime 1.14 to 1.20, which a Transpose refuses)
        nodes += [helper.make_node("Unsqueeze", ["chunk/rest", "chunk/axis0"], ["chunk/rest1"]),
                  helper.make_node("Concat", ["chunk/rest1", "chunk/batch"], ["chunk/shape"], axis=0),
                  helper.make_node("Reshape", ["chunk/tokens", "chunk/shape"], ["chunk/rest_tokens"]),
                  helper.make_node("Transpose", ["chunk/rest_tokens"], ["chunk/flat"], perm=[1, 0]),
                  helper.make_node("Concat", [*pieces, "chunk/flat"], [TOKENS_OUTPUT], axis=1)]  # (B, N)
    else:
        nodes.append(helper.make_node("Transpose", ["chunk/tokens"], [TOKENS_OUTPUT], perm=[1, 0]))  # (N, B) -> (B, N)
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
    _share_initializers(graph)
    proto = helper.make_model(graph, opset_imports=list(step.opset_import))
    proto.ir_version = step.ir_version
    proto.producer_name, proto.producer_version = step.producer_name, step.producer_version
    return proto


def _outputs(nodes: list[onnx.NodeProto]) -> set[str]:
    return {value for node in nodes for value in node.output}


def _int64(value, name: str) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.array(value, np.int64), name)


def _block_loop(model: ARModel, info: ModelInfo, vector: torch.Tensor, carried: list[str],
                before: set[str]) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], list[str]]:
    """The outer nodes that roll N // M blocks of M = ``model.chunk_block`` elements (``BlockStep``) from the
    ``carried`` token and state, ending in ``blocks/flat`` (B, N // M * M), the blocks' tokens -> (nodes, weights,
    the carried values after the blocks). ``before``: the values made before these nodes."""
    M = model.chunk_block
    nodes, weights = _split_blocks(M, vector.shape[-1])
    example = {"position": (POSITION_INPUT, torch.arange(2), {0: BATCH}),
               "vectors": ("block_vector", vector.new_zeros(2, M, vector.shape[-1]), {0: BATCH}),
               "uniforms": ("block_uniform", torch.full((2, M), 0.5, dtype=torch.float64), {0: BATCH})}
    rows = {"block_vector": "chunk/block_vectors", "block_uniform": "chunk/block_uniforms"}
    block, body, hoisted = _traced_body(BlockStep(model, info, M), model, info, example, "block/", rows,
                                        before | _outputs(nodes))
    outputs = ["blocks/last", *(f"blocks/{s.output}" for s in info.state), "blocks/tokens"]
    nodes += [*hoisted, helper.make_node("Loop", ["chunk/blocks", "", *carried], outputs, body=body),
              helper.make_node("Unsqueeze", ["chunk/blocks", "chunk/axis0"], ["blocks/n1"]),
              helper.make_node("Concat", ["blocks/n1", "chunk/batch", "chunk/M1"], ["blocks/scan_shape"], axis=0),
              helper.make_node("Reshape", ["blocks/tokens", "blocks/scan_shape"], ["blocks/scanned"]),  # (n, B, M)
              helper.make_node("Transpose", ["blocks/scanned"], ["blocks/rows"], perm=[1, 0, 2]),  # (B, n, M)
              helper.make_node("Concat", ["chunk/batch", "chunk/done1"], ["blocks/shape"], axis=0),
              helper.make_node("Reshape", ["blocks/rows", "blocks/shape"], ["blocks/flat"])]  # (B, n*M)
    return nodes, weights + list(block.graph.initializer), outputs[:-1]


def _split_blocks(block: int, width: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The outer nodes that cut the chunk's N elements into n = N // M blocks of M (``chunk/blocks``, per row
    ``chunk/block_uniforms`` (B, n, M) [and ``chunk/block_vectors`` (B, n, M, D)]) and the rest (``chunk/rest``
    elements from ``rest/position``, ``rest/uniforms`` [, ``rest/vectors``]); ``chunk/batch`` (1,) is B."""
    weights = [_int64(block, "chunk/M"), _int64([block], "chunk/M1"), _int64([0], "chunk/axis0"),
               _int64([1], "chunk/axis1"), _int64([np.iinfo(np.int64).max], "chunk/end"),
               _int64([0, -1, block], "chunk/block_shape")]
    nodes = [helper.make_node("Div", ["chunk/n", "chunk/M"], ["chunk/blocks"]),  # ()
             helper.make_node("Mul", ["chunk/blocks", "chunk/M"], ["chunk/done"]),
             helper.make_node("Sub", ["chunk/n", "chunk/done"], ["chunk/rest"]),
             helper.make_node("Unsqueeze", ["chunk/done", "chunk/axis0"], ["chunk/done1"]),  # (1,)
             helper.make_node("Shape", [TOKEN_INPUT], ["chunk/batch"]),  # (1,) B
             helper.make_node("Add", [POSITION_INPUT, "chunk/done"], ["rest/position"])]  # (B,)
    cut = [(UNIFORMS_INPUT, "chunk/block_uniforms", "rest/uniforms", "chunk/block_shape")]
    if width:
        weights.append(_int64([0, -1, block, width], "chunk/vector_shape"))
        cut.append((_SAMPLE_VECTORS, "chunk/block_vectors", "rest/vectors", "chunk/vector_shape"))
    for whole, blocks, rest, shape in cut:  # (B, N, ...) -> (B, n, M, ...) and (B, N - n*M, ...)
        nodes += [helper.make_node("Slice", [whole, "chunk/axis0", "chunk/done1", "chunk/axis1"], [f"{blocks}/flat"]),
                  helper.make_node("Reshape", [f"{blocks}/flat", shape], [blocks]),
                  helper.make_node("Slice", [whole, "chunk/done1", "chunk/end", "chunk/axis1"], [rest])]
    return nodes, weights


def _traced_body(module: nn.Module, model: ARModel, info: ModelInfo, example: dict, prefix: str,
                 rows: dict[str, str], before: set[str]) -> tuple[onnx.ModelProto, onnx.GraphProto, list]:
    """``module`` (a ``SamplingStep``, or a ``BlockStep`` whose last output is scanned) traced with the outer
    inputs of ``example`` (key -> (name, value, dynamic shape)) -> (the traced model, its Loop body, whose values
    start with ``prefix``, the body's nodes that compute only from ``before`` and its weights: they go before the
    Loop). ``rows``: row input -> the outer (B, N, ...) value the body takes row i of."""
    state = model.init_state(2)
    condition = (CONDITION_INPUT, torch.zeros(2, dtype=torch.long), None)
    outer = [example["position"]] + [condition] * (info.num_classes > 0)
    outer += [example["vectors"]] * bool(info.features) + [example["uniforms"]]
    names = [name for name, _, _ in outer]
    scanned = isinstance(module, BlockStep)
    outputs = ["next_token", *(f"{prefix}{s.output}" for s in info.state)] + ["tokens"] * scanned
    args = (torch.tensor(0), torch.full((2,), info.start_token), *(state[s.name] for s in info.state),
            *(value for _, value, _ in outer))
    shapes = (None, {0: BATCH}, *[{0: BATCH}] * len(info.state), *[{0: BATCH}] * len(outer))
    step = trace(module, args, (shapes,), ["i", "token", *(f"{prefix}{s.input}" for s in info.state), *names],
                 outputs, info.opset, f"the {info.family} chunk graph's {'block' if scanned else 'step'}",
                 rewrite=not scanned)
    if scanned:  # its weights apart from the step's (the same tensors are shared again at the end)
        weights = {t.name for t in step.graph.initializer}
        _prefix_names(step.graph, prefix, keep=_outputs(step.graph.node) | {v.name for v in step.graph.input}
                      | {v for n in step.graph.node for v in n.input} - weights)
    rows = {row: whole for row, whole in rows.items() if row in names}
    body = _loop_body(step.graph, set(names) | {t.name for t in step.graph.initializer}, rows, prefix, scanned)
    hoisted = _hoist_invariants(body, (set(names) - set(rows)) | {t.name for t in step.graph.initializer} | before,
                                prefix)
    return step, body, hoisted


def _share_initializers(graph: onnx.GraphProto) -> None:
    """Keep one of every set of equal initializers (the block and the step loop trace the same weights), in
    place: every reference, in the graph and its Loop bodies, names the one kept."""
    kept, renamed = {}, {}
    for tensor in list(graph.initializer):
        key = (tensor.data_type, tuple(tensor.dims), onnx.numpy_helper.to_array(tensor).tobytes())
        if key in kept:
            renamed[tensor.name] = kept[key]
            graph.initializer.remove(tensor)
        else:
            kept[key] = tensor.name

    def rename(nodes):
        for node in nodes:
            node.input[:] = [renamed.get(v, v) for v in node.input]
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    rename(a.g.node)

    if renamed:
        rename(graph.node)


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


def _loop_body(graph: onnx.GraphProto, outer: set[str], rows: dict[str, str], prefix: str,
               scanned: bool) -> onnx.GraphProto:
    """The traced step (inputs i, token, *state, *outer; outputs next_token, *state [, the scan output when
    ``scanned``]) -> a Loop body with inputs (i, cond, token, *state) and outputs (cond, next_token, *state, the
    scan output: next_token unless ``scanned``), its values named ``prefix`` + name. ``rows``: traced inputs the
    body makes itself, as row i of an outer (B, N, ...) value (a scalar index: one Gather)."""
    def name(value: str) -> str:
        return value if not value or value in outer else prefix + value.removeprefix(prefix)

    nodes = [helper.make_node("Gather", [whole, name("i")], [row], axis=1) for row, whole in rows.items()]
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in graph.input}
    # the token and the state keep their shapes from element to element: those of their outer initial values
    same_shape = {name("token"): TOKEN_INPUT} | {v.name: v.name.removeprefix(prefix)
                                                 for v in graph.input if v.name.startswith(prefix)}
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
            inputs.append(helper.make_tensor_value_info(f"{prefix}cond", TensorProto.BOOL, []))
    outputs = [helper.make_tensor_value_info(f"{prefix}cond", TensorProto.BOOL, [])]  # passed through
    outputs += [_plain(v, name(v.name)) for v in graph.output]
    if not scanned:
        outputs.append(helper.make_tensor_value_info(f"{prefix}scan_token", TensorProto.INT64, None))
        nodes.append(helper.make_node("Identity", [name("next_token")], [f"{prefix}scan_token"]))
    return helper.make_graph(nodes, prefix.strip("/"), inputs, outputs)


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


def _hoist_invariants(body: onnx.GraphProto, outer: set[str], prefix: str) -> list[onnx.NodeProto]:
    """Remove from ``body`` (in place) the nodes that compute only from ``outer`` values and each other (the
    loop-invariant ones: a row's base in the flat state, the batch's indices, ...) and return them, in order,
    for the outer graph: onnxruntime runs every node of a Loop body on every iteration, and a small node costs
    about as much as a big one. A node feeding a body output directly stays (a body output is made in it)."""
    invariant, hoisted, kept = set(outer), [], []
    outputs = {v.name for v in body.output}
    for node in body.node:
        if all(not v or v in invariant for v in node.input) and not outputs & set(node.output):
            node.name = f"{prefix}{node.name}" if node.name else ""  # unique among the outer graph's nodes
            hoisted.append(node)
            invariant.update(node.output)
        else:
            kept.append(node)
    del body.node[:]
    body.node.extend(kept)
    return hoisted
