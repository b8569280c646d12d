"""Does batching pay? Each step graph at batch 1 and 64 through arrun's own step loop, against the floor the
machine allows at batch 64, with onnxruntime's profile of where a batch-64 step goes (issue 23).

    python benchmarks/bench_batch.py MODEL_DIR... [--reps 5] [--seconds 0.4] [--json OUT.json]

MODEL_DIR is a model folder (holding step.onnx) or a folder of them (models/). Graphs of the same model name
from several folders (models before and after a re-export) are measured side by side, repetitions interleaved.
Everything runs on the CPU provider, one intra-op thread (arrun's defaults), in this one process.

For each graph:
- elements/s at batch 1 and 64 and their ratio: ``arrun.runtime.Stepper`` (IO binding, state fed back) stepping
  the start token, batch 1 and 64 alternating in ``--reps`` rounds of about ``--seconds`` each, the median kept.
  A graph that arrun refuses (an older format version) runs in this file's copy of that loop (``BoundLoop``,
  separate A/B state buffers, as arrun did at format 5); the ``loop`` column says which. To drive old graphs
  through the arrun that shipped them instead, put it first on PYTHONPATH and run from outside the repository:
  ``git archive 8f67b47 arrun | tar -x -C /tmp/old && cd /tmp && PYTHONPATH=/tmp/old python REPO/benchmarks/...``.
- the floor of a batch-64 step, counted from the graph with every tensor's shape at batch 64 (one element per
  row: a graph that takes chunks gets S = 1): FLOPs of every MatMul/Gemm/Conv (2 per multiply-add; an If
  branch weighted by how often it runs over the first positions), and the bytes a step must move: every
  initializer once, plus per row only the state the step reads and writes. A state tensor is followed through
  data movement (Reshape, Transpose, Concat, ...): a Gather/Slice/Split of it reads what it selects (if the
  selection reaches a computation), a computation on it whole reads it all, a ScatterElements/ScatterND writes
  only its updates and a Concat only its new parts; a state used inside an If branch counts whole. The machine:
  onnxruntime's rate on the graph's largest product: that node alone at its own shapes (weights as
  initializers), or the same multiply-adds as one weight product over every row (G x (M, K) @ (K, N), M
  counting the rows; a Conv as its im2col product), whichever is faster; and numpy's copy of 256 MB
  (bandwidth = bytes read + written per second).
  floor = max(FLOPs / rate, bytes / bandwidth); goal: the measured batch-64 step <= 2x the floor.
- onnxruntime's profile of 30 steps at batch 64: each op type's share of the step (the model_run time), and
  the share moving state: Concat, Gather, Slice, Split, Transpose, Reshape, Expand, Identity, Cast or Where
  nodes with a state tensor among their inputs (found in the graph, or by a state-sized input in the profile);
  scatters into a state are counted apart. Goal <= 10 %.
- for a graph that takes chunks (step_tokens > 1): prefill of one full chunk per row, elements/s at batch 64
  against batch 1 (best of the rounds).

Prints Markdown tables on stdout (progress on stderr); ``--json`` also writes every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # after PYTHONPATH: an older arrun put first there is the one measured

BATCHES = (1, 64)
BIG = 64  # the batch of the floor and the profile
PROFILE_STEPS, PROFILE_WARMUP = 30, 5
COPY_BYTES = 256 << 20
WRAP = 4096  # positions before a loop without max_length starts over (a vocoder's frames cover this many)
PRODUCTS = {"MatMul", "Gemm", "Conv"}
CONTAINERS = {"If", "Loop", "Scan"}
METADATA = {"Shape", "Size"}  # read a tensor's shape, not its data
MOVE = {"Identity", "Cast", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Concat", "Expand"}
SELECT = {"Gather", "GatherElements", "GatherND", "Slice", "Split"}
SCATTER = {"ScatterElements", "ScatterND", "Scatter"}
STATE_MOVERS = MOVE | SELECT | {"Where", "Copy", "MemcpyToHost", "MemcpyFromHost"}
DATA_INPUTS = {"Reshape": 1, "Expand": 1, "Gather": 1, "GatherElements": 1, "GatherND": 1, "Slice": 1, "Split": 1,
               "Squeeze": 1, "Unsqueeze": 1}  # ops whose later inputs are indices or shapes, not data


def session_options(profile_prefix: Path | None = None) -> ort.SessionOptions:
    """arrun's options (arrun.session._create_session): one intra-op thread, sequential, no spinning."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    return options


def new_session(model, profile_prefix: Path | None = None) -> ort.InferenceSession:
    """``model``: a path or serialized bytes."""
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, session_options(profile_prefix), providers=["CPUExecutionProvider"])


# --- the graph as its metadata and inputs describe it ---------------------------------------------------------

@dataclass(frozen=True)
class State:
    input: str
    output: str
    shape: tuple[int, ...]  # without the batch dimension
    dtype: str
    init: float
    in_place: bool = False


@dataclass(frozen=True)
class Graph:
    """What this benchmark needs of a step graph, read from its metadata and inputs (any format version)."""
    path: Path
    name: str  # the model folder's name
    label: str  # folder/name as the table shows it
    state: tuple[State, ...]
    output: str  # logits or mixture
    step_tokens: int
    max_length: int
    num_classes: int
    hop: int  # a vocoder's samples per frame, else 0
    n_mels: int
    position_rank: int | None  # None: no position input; 0: one per batch (format <= 5); 1: one per row
    format_version: int

    @classmethod
    def read(cls, path: Path) -> "Graph":
        session = new_session(path)
        meta = session.get_modelmeta().custom_metadata_map
        inputs = {i.name: i for i in session.get_inputs()}
        state = tuple(State(s["input"], s["output"], tuple(s["shape"][1:]), s.get("dtype", "float32"),
                            float(s.get("init", 0.0)), bool(s.get("in_place", False)))
                      for s in json.loads(meta["ar.state"]))
        outputs = [o.name for o in session.get_outputs() if o.name not in {s.output for s in state}]
        features = json.loads(meta.get("ar.features") or "{}")
        position = inputs.get("position")
        return cls(path, path.parent.name, f"{path.parent.parent.name}/{path.parent.name}", state, outputs[0],
                   int(meta.get("ar.step_tokens", "1")), int(meta.get("ar.max_length", "0")),
                   int(meta.get("ar.condition.num_classes", "0")), int(features.get("hop", 0)),
                   int(features.get("n_mels", 0)), None if position is None else len(position.shape),
                   int(meta["ar.format_version"]))

    @property
    def period(self) -> int:
        """Positions a run may reach before the loop starts over."""
        return self.max_length or WRAP

    def position(self, batch: int, t: int):
        """Position ``t`` as the graph takes it: (B,) int64 for a position per row, else an int."""
        return np.full(batch, t, np.int64) if self.position_rank == 1 else t

    def tokens(self, batch: int, length: int | None = None) -> np.ndarray:
        """(B,) or, for a graph that takes chunks, (B, S) int64 tokens (zeros: the speed is the same)."""
        return np.zeros((batch,) if length is None else (batch, length), np.int64)

    def condition(self, batch: int) -> np.ndarray | None:
        return np.zeros(batch, np.int64) if self.num_classes else None

    def features(self, batch: int) -> np.ndarray | None:
        """(B, F, M) frames covering ``period`` positions, for a vocoder."""
        if not self.hop:
            return None
        return np.zeros((batch, self.period // self.hop + 1, self.n_mels), np.float32)

    def feeds(self, batch: int, t: int = 0) -> dict[str, np.ndarray]:
        """One session.run's inputs at position ``t``, the state at its initial value."""
        feeds = {"input_ids": self.tokens(batch, 1 if self.step_tokens > 1 else None)}
        if self.position_rank is not None:
            feeds["position"] = np.asarray(self.position(batch, t), np.int64)
        if self.num_classes:
            feeds["condition"] = self.condition(batch)
        if self.hop:
            feeds["features"] = np.zeros((batch, self.n_mels), np.float32)
        for s in self.state:
            feeds[s.input] = np.full((batch, *s.shape), s.init, s.dtype)
        return feeds


# --- the step loop: arrun's, or this file's copy for graphs arrun refuses ---------------------------------------

class BoundLoop:
    """arrun's Stepper of format 5 for a graph arrun no longer opens: state in two sets of OrtValues bound
    A -> B and B -> A, the outputs bound to the host."""

    def __init__(self, graph: Graph, session: ort.InferenceSession, batch: int):
        self.graph, self.session, self.batch = graph, session, batch
        init = [np.full((batch, *s.shape), s.init, s.dtype) for s in graph.state]
        self._sets = [[ort.OrtValue.ortvalue_from_numpy(x.copy()) for x in init] for _ in range(2)]
        self._init = init
        self._bindings = []
        for a, b in (self._sets, self._sets[::-1]):
            io = session.io_binding()
            for s, x_in, x_out in zip(graph.state, a, b):
                io.bind_ortvalue_input(s.input, x_in)
                io.bind_ortvalue_output(s.output, x_out)
            self._bindings.append(io)
        self._parity = 0
        head, = (o for o in session.get_outputs() if o.name == graph.output)
        self._width = head.shape[-1]  # logits (..., V) or mixture parameters (..., W)
        self._outputs: dict[tuple, np.ndarray] = {}  # host buffers by shape, as arrun binds its logits

    def reset(self, condition=None, features=None) -> None:
        for value, init in zip(self._sets[0], self._init):
            value.update_inplace(init)
        self._parity = 0
        self._condition, self._features = condition, features

    def chunk(self, tokens: np.ndarray, position) -> np.ndarray:
        g, io = self.graph, self._bindings[self._parity]
        io.bind_cpu_input("input_ids", np.ascontiguousarray(tokens))
        if g.position_rank is not None:
            io.bind_cpu_input("position", np.asarray(position, np.int64))
        if self._condition is not None:
            io.bind_cpu_input("condition", self._condition)
        if self._features is not None:
            first = int(np.min(position))
            io.bind_cpu_input("features", np.ascontiguousarray(self._features[:, first // g.hop]))
        shape = (*tokens.shape, self._width)
        out = self._outputs.setdefault(shape, np.empty(shape, np.float32))
        io.bind_output(g.output, "cpu", 0, np.float32, list(shape), out.ctypes.data)
        self.session.run_with_iobinding(io)
        self._parity ^= 1
        return out

    def step(self, tokens: np.ndarray, position) -> np.ndarray:
        return self.chunk(tokens[:, None] if self.graph.step_tokens > 1 else tokens, position)


def make_loop(graph: Graph, batch: int, profile_prefix: Path | None = None):
    """-> (a loop with reset/step/chunk, 'arrun' or 'copy (format N)')."""
    try:
        from arrun.contract.errors import ARError
        from arrun.runtime import Stepper
        from arrun.session import open_model
        model = open_model(graph.path)
    except ARError:
        session = new_session(graph.path, profile_prefix)
        return BoundLoop(graph, session, batch), f"copy (format {graph.format_version})"
    if profile_prefix is not None:
        model = replace(model, session=new_session(graph.path, profile_prefix))
    return Stepper(model, batch), "arrun"


def prefill(loop, graph: Graph, tokens: np.ndarray, position: int = 0) -> None:
    """tokens (B, T) in chunks of step_tokens."""
    S, B = graph.step_tokens, tokens.shape[0]
    for i in range(0, tokens.shape[1], S):
        loop.chunk(tokens[:, i:i + S], graph.position(B, position + i))


class Runner:
    """One graph at one batch size: timed runs of ``n`` steps from wherever the last run stopped."""

    def __init__(self, graph: Graph, batch: int):
        self.graph, self.batch = graph, batch
        self.loop, self.kind = make_loop(graph, batch)
        self.tokens = graph.tokens(batch)
        self.t = graph.period  # forces a reset on the first run

    def run(self, n: int) -> float:
        """Seconds for ``n`` steps (resets happen before the clock starts)."""
        g, B = self.graph, self.batch
        if self.t + n > g.period:
            self.loop.reset(g.condition(B), g.features(B))
            self.t = 0
        step, tokens, t0 = self.loop.step, self.tokens, self.t
        positions = [g.position(B, t) for t in range(t0, t0 + n)]
        start = time.perf_counter()
        for p in positions:
            step(tokens, p)
        seconds = time.perf_counter() - start
        self.t += n
        return seconds


def throughput(graphs: list[Graph], reps: int, seconds: float) -> list[dict]:
    """Elements/s of every graph at each batch of BATCHES, all runs interleaved round by round."""
    runners = [{b: Runner(g, b) for b in BATCHES} for g in graphs]
    steps = []
    for per_batch in runners:  # warm up, and size each run to about ``seconds``
        n = {}
        for b, r in per_batch.items():
            r.run(3)
            once = r.run(5) / 5
            n[b] = int(max(5, min(seconds / once, r.graph.period - 1)))
        steps.append(n)
    rates = [{b: [] for b in BATCHES} for _ in graphs]
    for rep in range(reps):
        for i, per_batch in enumerate(runners):
            for b, r in per_batch.items():
                rates[i][b].append(b * steps[i][b] / r.run(steps[i][b]))
        print(f"  round {rep + 1}/{reps} done", file=sys.stderr, flush=True)
    out = []
    for i, g in enumerate(graphs):
        median = {b: statistics.median(rates[i][b]) for b in BATCHES}
        out.append({"loop": runners[i][BIG].kind, "elements_per_s": median,
                    "spread": {b: (min(rates[i][b]), max(rates[i][b])) for b in BATCHES},
                    "ratio": median[BIG] / median[1], "step_ms": 1e3 * BIG / median[BIG],
                    "steps_per_run": steps[i]})
    return out


def prefill_rates(graphs: list[Graph], reps: int) -> list[dict | None]:
    """Prefill elements/s of one full chunk per row at each batch, best of ``reps`` interleaved rounds."""
    out = []
    for g in graphs:
        if g.step_tokens <= 1:
            out.append(None)
            continue
        loops = {b: make_loop(g, b)[0] for b in BATCHES}
        best = {b: np.inf for b in BATCHES}
        for _ in range(reps + 1):  # the first round warms up
            for b, loop in loops.items():
                loop.reset(g.condition(b), g.features(b))
                prompt = g.tokens(b, g.step_tokens)
                start = time.perf_counter()
                prefill(loop, g, prompt)
                best[b] = min(best[b], time.perf_counter() - start)
        per_s = {b: b * g.step_tokens / best[b] for b in BATCHES}
        out.append({"elements_per_s": per_s, "ratio": per_s[BIG] / per_s[1]})
    return out


# --- the floor -------------------------------------------------------------------------------------------------

def _dtype_size(elem_type: int) -> int:
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize


def _subgraphs(node):
    return [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for sub in _subgraphs(node):
            yield from _all_nodes(sub)


def _outer_names(graph) -> set[str]:
    """Names a subgraph reads from the enclosing scopes."""
    local = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    local |= {o for n in _all_nodes(graph) for o in n.output}
    return {i for n in _all_nodes(graph) for i in n.input if i and i not in local}


def tensor_shapes(graph: Graph, model: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...], int]]:
    """name -> (shape, bytes per element) of every tensor at batch BIG: the main graph's from one real run with
    every intermediate as an output, a subgraph's from onnx shape inference with the inputs fixed."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    feeds = graph.feeds(BIG, _mid_position(graph))
    for i in fixed.graph.input:
        if i.name in feeds:
            dims = i.type.tensor_type.shape.dim
            for d, n in zip(dims, feeds[i.name].shape):
                d.ClearField("dim_param")
                d.dim_value = n
    shapes = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
        for vi in _value_infos(inferred.graph):
            t = vi.type.tensor_type
            if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
                shapes[vi.name] = (tuple(d.dim_value for d in t.shape.dim), _dtype_size(t.elem_type))
    except Exception as e:  # a subgraph's products are then uncounted; the run below still sizes the main graph
        print(f"  shape inference failed ({str(e).splitlines()[0][:120]})", file=sys.stderr)
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    known = {o.name for o in exposed.graph.output}
    names = [o for n in exposed.graph.node for o in n.output if o and o not in known]
    exposed.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    session = new_session(exposed.SerializeToString())
    values = session.run(None, feeds)
    for o, v in zip(session.get_outputs(), values):
        shapes[o.name] = (tuple(v.shape), v.dtype.itemsize)
    for name, v in feeds.items():
        shapes[name] = (tuple(v.shape), v.dtype.itemsize)
    for init in _initializers(model.graph):
        shapes[init.name] = (tuple(init.dims), _dtype_size(init.data_type))
    return shapes


def _mid_position(graph: Graph) -> int:
    """A position past a Transformer's window (a full ring) but in a pixel model's range."""
    return min(graph.period - 1, 300)


def _value_infos(graph):
    yield from [*graph.value_info, *graph.input, *graph.output]
    for node in graph.node:
        for sub in _subgraphs(node):
            yield from _value_infos(sub)


def _initializers(graph):
    yield from graph.initializer
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    yield a.t
        for sub in _subgraphs(node):
            yield from _initializers(sub)


def _nbytes(shapes, name) -> int:
    shape, size = shapes[name]
    return int(np.prod(shape, dtype=np.int64)) * size


def product_flops(node, shapes) -> int | None:
    """2 x multiply-adds of a MatMul/Gemm/Conv from its shapes, or None if they are unknown."""
    try:
        out = int(np.prod(shapes[node.output[0]][0], dtype=np.int64))
        a, b = shapes[node.input[0]][0], shapes[node.input[1]][0]
    except KeyError:
        return None
    if node.op_type == "MatMul":
        return 2 * out * a[-1]
    if node.op_type == "Gemm":
        trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
        return 2 * out * (a[0] if trans_a else a[1])
    return 2 * out * int(np.prod(b[1:]))  # Conv: (Cout, Cin / group, *kernel)


def if_frequencies(graph: Graph, model: onnx.ModelProto) -> dict[str, float]:
    """Each If node's output name -> the share of steps that take its heavier ('then') branch, over the first
    positions at batch 1 (the condition exposed as an output)."""
    conds = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "If"}
    if not conds:
        return {}
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.extend(helper.make_empty_tensor_value_info(c) for c in set(conds.values()))
    session = new_session(exposed.SerializeToString())
    positions = range(min(graph.period, 256))
    taken = {c: 0 for c in set(conds.values())}
    for t in positions:
        names = list(taken)
        for c, v in zip(names, session.run(names, graph.feeds(1, t))):
            taken[c] += bool(np.asarray(v).all())
    return {out: taken[c] / len(positions) for out, c in conds.items()}


def count_work(graph: Graph, model: onnx.ModelProto, shapes) -> dict:
    """FLOPs and bytes one step at batch BIG must do (see the module docstring), and the largest product."""
    weights = sum(_nbytes(shapes, i.name) if i.name in shapes else 0 for i in _initializers(model.graph))
    share, taken = {}, if_frequencies(graph, model)
    for node in model.graph.node:  # the nodes of an If branch run on that branch's share of the steps
        if node.op_type == "If":
            then = taken[node.output[0]]
            for a in node.attribute:
                for sub_node in _all_nodes(a.g):
                    share[sub_node.output[0]] = then if a.name == "then_branch" else 1 - then
    flops, unknown, largest = 0.0, 0, (0, None)
    for node in model.graph.node:
        nodes = [(node, 1.0)] + [(n, share.get(n.output[0], 1.0)) for sub in _subgraphs(node) for n in _all_nodes(sub)]
        for n, weight in nodes:
            if n.op_type not in PRODUCTS:
                continue
            f = product_flops(n, shapes)
            if f is None:
                unknown += 1
                continue
            flops += weight * f
            largest = max(largest, (f, n), key=lambda x: x[0])
    read, write, movers, scatters = state_traffic(graph, model, shapes)
    return {"flops": flops, "unknown_products": unknown, "weight_bytes": weights, "state_read_bytes": read,
            "state_write_bytes": write, "bytes": weights + read + write, "largest_product": largest,
            "state_movers": movers, "state_scatters": scatters}


def follow_state(graph: Graph, g: onnx.GraphProto) -> tuple[dict[str, str], set, set]:
    """The tensors derived from the state inputs by data movement -> ({tensor: 'whole' | 'selected'}, names of
    the nodes moving state, names of the scatters into state)."""
    derived = {s.input: "whole" for s in graph.state}
    movers, scatters = set(), set()
    for n in g.node:  # topological order
        data = n.input[:DATA_INPUTS.get(n.op_type, len(n.input))]
        hit = [i for i in data if i in derived]
        if n.op_type in SCATTER and n.input[0] in derived:
            scatters.add(n.name)
            derived.update({o: "whole" for o in n.output})
        elif n.op_type in MOVE and hit:
            movers.add(n.name)
            status = "whole" if any(derived[i] == "whole" for i in hit) else "selected"
            derived.update({o: status for o in n.output})
        elif n.op_type in SELECT and hit:
            movers.add(n.name)
            derived.update({o: "selected" for o in n.output if o})
        elif n.op_type == "Where" and hit:
            movers.add(n.name)
    return derived, movers, scatters


def state_traffic(graph: Graph, model: onnx.ModelProto, shapes) -> tuple[int, int, set, set]:
    """-> (bytes of state a step reads, bytes it writes, names of nodes moving state, names of scatters into
    state), by following each state input through the main graph (see the module docstring)."""
    g = model.graph
    derived, movers, scatters = follow_state(graph, g)
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in set(n.input) | _outer_names_of(n):
            consumers.setdefault(i, []).append(n)

    def is_compute(n) -> bool:
        return n.op_type not in MOVE | SELECT | SCATTER | METADATA

    reach: dict[str, bool] = {}

    def reaches_compute(t: str) -> bool:
        if t not in reach:
            reach[t] = False  # cycles cannot happen in a DAG; this guards the recursion
            reach[t] = any(is_compute(c) or (c.op_type in MOVE | SELECT and any(reaches_compute(o) for o in c.output))
                           for c in consumers.get(t, []) if not (c.op_type in SCATTER and t != c.input[0]))
        return reach[t]

    read, counted = 0, set()
    for t, status in derived.items():
        if status != "whole":
            continue
        for c in consumers.get(t, []):
            if c.op_type in SELECT and c.input[0] == t:
                read += sum(_nbytes(shapes, o) for o in c.output if o and o in shapes and reaches_compute(o))
            elif is_compute(c) and t not in counted and t in shapes:
                counted.add(t)
                read += _nbytes(shapes, t)
    memo: dict[str, int] = {}

    def written(t: str) -> int:
        if t in memo:
            return memo[t]
        n = producer.get(t)
        full = _nbytes(shapes, t) if t in shapes else 0
        if n is None:
            result = 0 if t in derived else full
        elif n.op_type in SCATTER:
            result = _nbytes(shapes, n.input[2]) + written(n.input[0])
        elif n.op_type == "Concat":
            result = sum(written(i) if i in derived else _nbytes(shapes, i) for i in n.input)
        elif n.op_type in MOVE | SELECT and n.input[0] in derived:
            result = min(full, written(n.input[0]))
        else:
            result = full
        memo[t] = result
        return result

    outputs = {o.name for o in g.output}
    write = sum(written(s.output) for s in graph.state if s.output in outputs)
    return read, write, movers, scatters


def _outer_names_of(node) -> set[str]:
    return set().union(*(_outer_names(sub) for sub in _subgraphs(node))) if _subgraphs(node) else set()


def product_rate(node, shapes, model: onnx.ModelProto) -> float:
    """FLOP/s of onnxruntime on ``node`` alone at its batch-BIG shapes (its initializers stay initializers)."""
    inits = {i.name for i in _initializers(model.graph)}
    rng = np.random.default_rng(0)
    inputs, initializers, feeds = [], [], {}
    for name in node.input:
        if not name:
            continue
        shape, _ = shapes[name]
        value = rng.standard_normal(shape).astype(np.float32)
        if name in inits:
            initializers.append(numpy_helper.from_array(value, name))
        else:
            inputs.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape))
            feeds[name] = value
    out = helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, shapes[node.output[0]][0])
    return _rate(helper.make_graph([node], "product", inputs, [out], initializers), model, feeds,
                 product_flops(node, shapes))


def canonical_product(node, shapes, model: onnx.ModelProto) -> tuple[int, int, int, int] | None:
    """The same multiply-adds as one weight product over the batch's rows: (G, M, K, N) for G products of
    (M, K) activations by (K, N) weights, M counting every row. A MatMul by weights (..., K, N) keeps G = the
    weights' leading size; a Conv is its im2col product; None for a product of two activations."""
    inits = {i.name for i in _initializers(model.graph)}
    if node.input[1] not in inits:
        return None
    out, a, b = (shapes[n][0] for n in (node.output[0], node.input[0], node.input[1]))
    if node.op_type == "Conv":
        G, K, N = 1, int(np.prod(b[1:])), b[0]
    elif node.op_type == "Gemm":
        G, K, N = 1, int(np.prod(a)) // out[0], out[1]
    else:
        G, K, N = int(np.prod(b[:-2])), a[-1], out[-1]
    return G, int(np.prod(out)) // (G * N), K, N


def canonical_rate(node, shapes, model: onnx.ModelProto) -> float:
    """FLOP/s of onnxruntime on ``canonical_product`` (one MatMul node, the weights an initializer); 0 if none."""
    shape = canonical_product(node, shapes, model)
    if shape is None:
        return 0.0
    G, M, K, N = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((G, M, K)).astype(np.float32)
    w = numpy_helper.from_array(rng.standard_normal((G, K, N)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"])], "canonical",
                              [helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, a.shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, (G, M, N))], [w])
    return _rate(graph, model, {"a": a}, 2 * G * M * K * N)


def _rate(graph, model: onnx.ModelProto, feeds: dict, flops: int) -> float:
    """FLOP/s of a one-node graph, timed for at least 0.2 s after one warm-up run."""
    session = new_session(helper.make_model(graph, opset_imports=model.opset_import).SerializeToString())
    session.run(None, feeds)
    n, seconds = 1, 0.0
    while seconds < 0.2:
        n *= 2
        start = time.perf_counter()
        for _ in range(n):
            session.run(None, feeds)
        seconds = time.perf_counter() - start
    return flops * n / seconds


def copy_bandwidth() -> float:
    """Bytes read + written per second by numpy copying COPY_BYTES, best of 5."""
    src = np.ones(COPY_BYTES // 4, np.float32)
    dst = np.empty_like(src)
    best = np.inf
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * COPY_BYTES / best


# --- where a batch-64 step goes ---------------------------------------------------------------------------------

def profile_shares(graph: Graph, movers: set, scatters: set, work: Path) -> dict:
    """onnxruntime's profile of PROFILE_STEPS steps at batch BIG (after PROFILE_WARMUP): each op type's share of
    the model_run time, and the shares moving state and scattering into it."""
    loop, _ = make_loop(graph, BIG, work / f"profile-{graph.name}-{graph.format_version}")
    session = loop.session if isinstance(loop, BoundLoop) else loop._session
    loop.reset(graph.condition(BIG), graph.features(BIG))
    tokens = graph.tokens(BIG)
    for t in range(PROFILE_WARMUP + PROFILE_STEPS):
        loop.step(tokens, graph.position(BIG, t % graph.period))
    events = json.loads(Path(session.end_profiling()).read_text())
    return shares(events, movers, scatters, {(BIG, *s.shape) for s in graph.state})


def shares(events: list[dict], movers: set, scatters: set, state_shapes: set) -> dict:
    """Profile events -> {op type: share of run time}, the state-moving and scatter shares, and the node time's
    share (the rest is onnxruntime's own work between nodes)."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])[PROFILE_WARMUP:]
    if not runs:
        return {}
    start = runs[0]["ts"]
    total = sum(e["dur"] for e in runs)
    by_op: dict[str, float] = {}
    moving: dict[str, float] = {}  # op type -> time moving state
    scattering = 0.0
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < start:
            continue
        args, name = e.get("args", {}), e["name"].removesuffix("_kernel_time")
        op = args.get("op_name", "?")
        if op in CONTAINERS:  # their time is their branch's nodes', profiled one by one
            continue
        by_op[op] = by_op.get(op, 0.0) + e["dur"]
        inputs = [tuple(s) for t in args.get("input_type_shape", []) for s in t.values()]
        if name in scatters or (op in SCATTER and any(s in state_shapes for s in inputs)):
            scattering += e["dur"]
        elif name in movers or (op in STATE_MOVERS and any(s in state_shapes for s in inputs)):
            moving[op] = moving.get(op, 0.0) + e["dur"]
    ops = {op: d / total for op, d in sorted(by_op.items(), key=lambda kv: -kv[1])}
    moving_ops = {op: d / total for op, d in sorted(moving.items(), key=lambda kv: -kv[1])}
    return {"ops": ops, "state_moving": sum(moving.values()) / total, "state_moving_ops": moving_ops,
            "state_scatter": scattering / total,
            "nodes": sum(by_op.values()) / total, "runs": len(runs)}


# --- the tables ------------------------------------------------------------------------------------------------

def find_graphs(dirs: list[Path]) -> list[Graph]:
    paths = []
    for d in dirs:
        paths += [d / "step.onnx"] if (d / "step.onnx").is_file() else sorted(d.glob("*/step.onnx"))
    return [Graph.read(p) for p in paths]


def measure(graphs: list[Graph], reps: int, seconds: float) -> list[dict]:
    """Every figure of every graph; graphs of the same model name are interleaved in the throughput rounds."""
    bandwidth = copy_bandwidth()
    print(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s", file=sys.stderr, flush=True)
    records = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        for name in dict.fromkeys(g.name for g in graphs):
            group = [g for g in graphs if g.name == name]
            print(f"{name}: {', '.join(g.label for g in group)}", file=sys.stderr, flush=True)
            speeds = throughput(group, reps, seconds)
            prefills = prefill_rates(group, max(2, reps // 2))
            for g, speed, pre in zip(group, speeds, prefills):
                model = onnx.load(str(g.path))
                shapes = tensor_shapes(g, model)
                work = count_work(g, model, shapes)
                flops, node = work.pop("largest_product")
                as_is, canonical = product_rate(node, shapes, model), canonical_rate(node, shapes, model)
                rate = max(as_is, canonical)
                movers, scatters = work.pop("state_movers"), work.pop("state_scatters")
                floor = max(work["flops"] / rate, work["bytes"] / bandwidth)
                prof = profile_shares(g, movers, scatters, Path(tmp))
                records.append({
                    "model": g.name, "graph": g.label, "format_version": g.format_version,
                    "position": {None: "none", 0: "scalar", 1: "per row"}[g.position_rank],
                    "in_place": [s.input for s in g.state if s.in_place], "states": len(g.state), **speed, **work,
                    "largest_product": {"op": node.op_type, "name": node.name, "flops": flops,
                                        "shapes": [shapes[i][0] for i in node.input if i]},
                    "product_flop_per_s": rate, "product_as_is_flop_per_s": as_is,
                    "product_canonical_flop_per_s": canonical, "copy_bytes_per_s": bandwidth,
                    "floor_ms": 1e3 * floor, "bound": "compute" if work["flops"] / rate >= work["bytes"] / bandwidth
                    else "memory", "step_vs_floor": speed["step_ms"] / (1e3 * floor), "profile": prof,
                    "prefill": pre})
                print(f"  {g.label}: {speed['ratio']:.1f}x, b64 step {speed['step_ms']:.2f} ms, "
                      f"floor {1e3 * floor:.2f} ms", file=sys.stderr, flush=True)
    return records


def markdown(records: list[dict], environment: str) -> str:
    lines = [environment, "",
             "| graph | loop | elements/s b1 | elements/s b64 | b64 ÷ b1 | b64 step ms | floor ms (bound) "
             "| step ÷ floor | GFLOP/step | MB/step (weights + state r/w) "
             "| largest product GFLOP/s (as is / as one product) | prefill elements/s b64 ÷ b1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        e, pre = r["elements_per_s"], r["prefill"]
        prefill_ratio = "—" if pre is None else f"{pre['ratio']:.2f}×"
        as_is, canonical = r["product_as_is_flop_per_s"], r["product_canonical_flop_per_s"]
        unsized = f" (+{r['unknown_products']} unsized)" if r["unknown_products"] else ""
        mb = (f"{r['bytes'] / 1e6:.1f} ({r['weight_bytes'] / 1e6:.1f} + {r['state_read_bytes'] / 1e6:.1f} r "
              f"+ {r['state_write_bytes'] / 1e6:.2f} w)")
        loop = f"{r['loop']}, {len(r['in_place'])}/{r['states']} state in place"
        lines.append(f"| {r['graph']} | {loop} | {e[1]:,.0f} | {e[BIG]:,.0f} | {r['ratio']:.1f}× "
                     f"| {r['step_ms']:.2f} | {r['floor_ms']:.2f} ({r['bound']}) | {r['step_vs_floor']:.1f}× "
                     f"| {r['flops'] / 1e9:.3f}{unsized} | {mb} | {as_is / 1e9:.1f} / {canonical / 1e9:.1f} "
                     f"| {prefill_ratio} |")
    lines += ["", f"Profile at batch {BIG} ({PROFILE_STEPS} steps): share of the step's run time", "",
              "| graph | moving state | scatter into state | top op types | nodes / run |", "|---|---|---|---|---|"]
    for r in records:
        p = r["profile"]
        top = ", ".join(f"{op} {100 * s:.0f} %" for op, s in list(p["ops"].items())[:6])
        by = ", ".join(f"{op} {100 * s:.0f}" for op, s in list(p["state_moving_ops"].items())[:3])
        lines.append(f"| {r['graph']} | {100 * p['state_moving']:.0f} %{f' ({by})' if by else ''} "
                     f"| {100 * p['state_scatter']:.0f} % "
                     f"| {top} | {100 * p['nodes']:.0f} % |")
    return "\n".join(lines)


def environment_line() -> str:
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"onnxruntime {ort.__version__}, CPU provider, 1 intra-op thread, {os.cpu_count()} cores, "
            f"load average {load} (1/5/15 min) at the end of the run")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, metavar="MODEL_DIR")
    parser.add_argument("--reps", type=int, default=5, help="Interleaved rounds of batch 1 and 64.")
    parser.add_argument("--seconds", type=float, default=0.4, help="About how long each timed run lasts.")
    parser.add_argument("--json", type=Path, help="Also write every figure here.")
    args = parser.parse_args(argv)
    graphs = find_graphs(args.dirs)
    if not graphs:
        parser.error(f"no step.onnx in or under {', '.join(map(str, args.dirs))}")
    records = measure(graphs, args.reps, args.seconds)
    env = environment_line()
    print(markdown(records, env))
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "records": records}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
