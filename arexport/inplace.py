"""Which state tensors a runtime may update in place, proved (contract format 6: docs/contract.md).

A state X is ``in_place`` when one buffer bound as both ``in.X`` and ``out.X`` gives what two separate
buffers give. Two proofs, both required:

1. structure (``structural_verdicts``), on the graph as stored: ``out.X`` is the output of a ScatterElements or
   ScatterND node N whose data input is the graph input ``in.X``; every other node that reads ``in.X`` (or a
   view of it: Identity, Reshape, Squeeze, Unsqueeze, Flatten of it, which a runtime may alias) is an ancestor
   of N, so N depends by data on every read of the buffer and no execution order overwrites a slot before it
   is read; and no subgraph (an If or Loop body) reads ``in.X``.
2. onnxruntime (``prove``): the step graph rolled with one OrtValue bound as both ``in.X`` and ``out.X`` (every
   structural candidate at once) equals the rollout with separate buffers bit for bit, for every output at
   every call, through at least 2 * ``state_period`` + 3 calls (a whole sequence and 3 more where the model has
   a fixed length: an image), at batch 1 and 3 with rows at different positions that restart from their
   initial state at different calls (``Schedule``).

A structural failure is an answer (the state keeps two buffers, the report says why); a structural candidate
whose onnxruntime proof fails is an error: the graph is not what its structure says, and nothing is declared.

``Schedule`` and ``roll`` also drive verification's per-row check (``verify.py``): rows joining at different
calls, each equal to forward.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort

from arrun.contract.schema import CONDITION_INPUT, FEATURES_INPUT, POSITION_INPUT, TOKEN_INPUT, ModelInfo

WRITERS = ("ScatterElements", "ScatterND")
VIEWS = ("Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten")  # outputs a runtime may alias to the input
def row_offsets(batch: int) -> tuple[int, ...]:
    """The call at which row b (re)starts from its initial state: 0, 2, 5, 7, 10, ..."""
    return tuple(b * 5 // 2 for b in range(batch))
EXTRA_CALLS = 3      # past two wraps of every ring (or one whole sequence)


@dataclass(frozen=True)
class StateVerdict:
    """Whether state ``name`` is declared in place, and why not when it is not."""
    name: str
    in_place: bool
    reason: str  # '' when in place

    def line(self) -> str:
        return f"state {self.name:<24} {'in place' if self.in_place else 'two buffers: ' + self.reason}"


class AliasingError(RuntimeError):
    """A structural candidate's aliased rollout differs from the separate-buffer one."""


# -- 1. structure ---------------------------------------------------------------------------------------------

def structural_verdicts(proto: onnx.ModelProto, info: ModelInfo) -> list[StateVerdict]:
    """Each state of ``info``: a candidate (in_place True) when the graph's structure allows one buffer,
    else the reason it does not."""
    graph = proto.graph
    producer = {out: node for node in graph.node for out in node.output}
    captured = _subgraph_reads(graph)
    verdicts = []
    for spec in info.state:
        verdicts.append(StateVerdict(spec.name, *_structure(graph, producer, captured, spec.input, spec.output)))
    return verdicts


def state_structure(graph: onnx.GraphProto, name: str) -> tuple[bool, str]:
    """The structural verdict for state ``name`` (inputs ``in.name``, outputs ``out.name``) of ``graph``:
    (a candidate, else the reason it is not)."""
    producer = {out: node for node in graph.node for out in node.output}
    return _structure(graph, producer, _subgraph_reads(graph), f"in.{name}", f"out.{name}")


def _structure(graph: onnx.GraphProto, producer: dict, captured: set[str], x_in: str, x_out: str) -> tuple[bool, str]:
    writer = producer.get(x_out)
    if writer is None or writer.op_type not in WRITERS:
        made = "a graph input passed through" if writer is None else f"a {writer.op_type} node"
        return False, f"{x_out} is {made}, not a ScatterElements/ScatterND writing one slot"
    if writer.input[0] != x_in:
        return False, f"the scatter writing {x_out} updates {writer.input[0]!r}, not {x_in} itself"
    aliases = _views_of(graph, x_in)
    if aliases & captured:
        return False, f"a subgraph (If/Loop body) reads {x_in}"
    if aliases & {v.name for v in graph.output}:
        return False, f"{x_in} (or a view of it) is also a graph output"
    before = _ancestors(writer, producer)
    for node in graph.node:
        if node is not writer and aliases & set(node.input) and id(node) not in before and node.op_type not in VIEWS:
            return False, (f"{node.op_type} node {node.name!r} reads {x_in} without the scatter depending on it "
                           "(a runtime could run it after the write)")
    return True, ""


def _views_of(graph: onnx.GraphProto, name: str) -> set[str]:
    """``name`` and every value a chain of view ops (``VIEWS``) makes of it."""
    views, grew = {name}, True
    while grew:
        grew = False
        for node in graph.node:
            if node.op_type in VIEWS and node.input and node.input[0] in views and node.output[0] not in views:
                views.add(node.output[0])
                grew = True
    return views


def _ancestors(node: onnx.NodeProto, producer: dict) -> set[int]:
    """ids of the nodes ``node`` depends on by data, transitively."""
    seen, todo = set(), list(node.input)
    while todo:
        parent = producer.get(todo.pop())
        if parent is not None and id(parent) not in seen:
            seen.add(id(parent))
            todo.extend(parent.input)
    return seen


def _subgraph_reads(graph: onnx.GraphProto) -> set[str]:
    """Names read inside any subgraph of ``graph`` (at any depth)."""
    names = set()
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] * attr.HasField("g") + list(attr.graphs):
                names |= {i for n in sub.node for i in n.input} | _subgraph_reads(sub)
    return names


# -- 2. onnxruntime ------------------------------------------------------------------------------------------

@dataclass
class Schedule:
    """Who runs what at each call: row b restarts (state reset, position 0) at call ``offsets[b]`` and whenever
    its next chunk would pass ``limit`` (a bounded model's length); before its first restart it runs a stream
    of its own from position 0. ``sizes`` cycles the chunk sizes (1 unless the graph takes chunks)."""
    batch: int
    calls: int
    limit: int = 0  # 0: unbounded
    sizes: tuple[int, ...] = (1,)
    offsets: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if not self.offsets:
            self.offsets = tuple(o % self.limit if self.limit else o for o in row_offsets(self.batch))

    def __iter__(self):
        """-> (size, positions (B,) int64, restart (B,) bool) per call."""
        pos = np.zeros(self.batch, np.int64)
        for call in range(self.calls):
            size = self.sizes[call % len(self.sizes)]
            if self.limit:
                size = min(size, self.limit)
            restart = np.array([call == o for o in self.offsets]) | ((pos + size > self.limit) if self.limit else False)
            pos[restart] = 0
            yield size, pos.copy(), restart
            pos += size


def roll(session: ort.InferenceSession, info: ModelInfo, schedule: Schedule, tokens: np.ndarray,
         condition: np.ndarray | None, frames: np.ndarray | None, alias: frozenset[str] = frozenset()) -> list[list]:
    """Run the step graph through ``schedule``: call c feeds row b the tokens ``tokens[b, p:p + size]`` at its
    position p (tokens (B, N) with N > every position reached), the condition (B,), and its own frame
    ``frames[b, p // hop]`` (a vocoder; frames (B, F, M)). States named in ``alias`` are one OrtValue bound as
    both input and output; the others are fed and fetched as separate arrays. A restarting row's state is reset
    to the initial state in its buffer. -> per call, every graph output as a new array (output names' order)."""
    B, chunked = schedule.batch, info.step_tokens > 1
    state = {s.name: s.initial(B) for s in info.state}  # numpy buffers; an aliased one stays bound
    bound = {name: ort.OrtValue.ortvalue_from_numpy(state[name]) for name in alias}
    io = session.io_binding()
    if info.num_classes:
        io.bind_cpu_input(CONDITION_INPUT, np.ascontiguousarray(condition, np.int64))
    aliased_outputs = {s.output: bound[s.name] for s in info.state if s.name in bound}
    for spec in info.state:
        if spec.name in bound:
            io.bind_ortvalue_input(spec.input, bound[spec.name])
    results, rows = [], np.arange(B)
    for size, pos, restart in schedule:
        for spec in info.state:
            state[spec.name][restart] = spec.init  # in the bound buffer too: it shares the array's memory
        window = pos[:, None] + np.arange(size)  # (B, s)
        io.bind_cpu_input(TOKEN_INPUT, np.ascontiguousarray(tokens[rows[:, None], window] if chunked else tokens[rows, pos]))
        if info.uses_position:
            io.bind_cpu_input(POSITION_INPUT, pos)
        if info.features:
            io.bind_cpu_input(FEATURES_INPUT, np.ascontiguousarray(frames[rows, pos // info.features.hop]))
        for spec in info.state:
            if spec.name not in bound:
                io.bind_cpu_input(spec.input, state[spec.name])
        io.clear_binding_outputs()
        for name in info.output_names():  # in order: copy_outputs_to_cpu returns them so
            if name in aliased_outputs:
                io.bind_ortvalue_output(name, aliased_outputs[name])
            else:
                io.bind_output(name, "cpu")
        session.run_with_iobinding(io)
        outputs = dict(zip(info.output_names(), io.copy_outputs_to_cpu()))  # new arrays, the aliased ones copied
        for spec in info.state:
            if spec.name not in bound:
                state[spec.name] = outputs[spec.output].copy()  # a restart writes into it; the result stays
        results.append([outputs[name] for name in info.output_names()])
    return results


def alias_calls(info: ModelInfo, state_period: int, batch: int) -> int:
    """Calls the aliasing proof rolls: two wraps of every ring and 3 more (a whole sequence and 3 more for a
    model of fixed length), past the last row's first restart."""
    return max(2 * state_period, info.max_length if info.image_shape else 0) + EXTRA_CALLS + max(row_offsets(batch))


def prove(session: ort.InferenceSession, proto: onnx.ModelProto, info: ModelInfo, state_period: int,
          rng: np.random.Generator, batches: tuple[int, ...] = (1, 3)) -> list[StateVerdict]:
    """The structural verdicts, and for the candidates the onnxruntime proof at each batch size; raises
    AliasingError naming the first output that differs."""
    verdicts = structural_verdicts(proto, info)
    if info.graph != "step":
        return [v if not v.in_place else StateVerdict(v.name, False, f"the aliasing proof rolls step graphs, not {info.graph} graphs")
                for v in verdicts]
    candidates = frozenset(v.name for v in verdicts if v.in_place)
    if not candidates:
        return verdicts
    sizes = (1, info.step_tokens, 2) if info.step_tokens > 1 else (1,)
    for batch in batches:
        calls = alias_calls(info, state_period, batch)
        schedule = Schedule(batch, calls, info.max_length, sizes)
        span = calls * max(sizes) + 1 if not info.max_length else info.max_length
        tokens, condition, frames = random_inputs(info, rng, batch, span)
        separate = roll(session, info, schedule, tokens, condition, frames)
        aliased = roll(session, info, schedule, tokens, condition, frames, alias=candidates)
        for call, (want, got) in enumerate(zip(separate, aliased)):
            for name, a, b in zip(info.output_names(), want, got):
                if a.shape != b.shape or a.tobytes() != b.tobytes():
                    raise AliasingError(f"with {', '.join(sorted(candidates))} bound in place, {name} at call {call} "
                                        f"(batch {batch}) differs from the separate-buffer rollout "
                                        f"(max |diff| {np.abs(a.astype(np.float64) - b).max():.1e})")
    return verdicts


def random_inputs(info: ModelInfo, rng: np.random.Generator, batch: int, span: int):
    """Random tokens (B, span), condition (B,) (None without classes) and frames (B, F, M) (None without
    features) covering positions 0 .. span - 1."""
    tokens = rng.integers(0, info.vocab_size, (batch, span), dtype=np.int64)
    condition = rng.integers(0, info.num_classes, batch, dtype=np.int64) if info.num_classes else None
    frames = None
    if info.features:
        frames = (rng.standard_normal((batch, info.features.frames(span), info.features.n_mels)) * 2 - 5).astype(np.float32)
    return tokens, condition, frames
