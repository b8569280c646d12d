"""The windowed Transformer: rotary positions, a sliding window, the ring-buffer step state and prefill;
scoring by the rollout's own rule; unbounded, streamed sampling; onnxruntime-genai interop."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from arexport.cli import app as arexport
from artrain.cli import app as artrain
from artrain.models import build_model
from artrain.models.transformer import rotary, rotate
from arrun.cli import app as arrun
from arrun.contract.scoring import chunks
from arrun.runtime import Stepper, prefill
from arrun.session import open_model
from conftest import TINY, exported

W = TINY["transformer"][0]["window"]
TEXT = "the cat sat on the mat. a dog ate the hat.\n" * 60


def model(seed: int = 0, **changes):
    torch.manual_seed(seed)
    m = build_model("transformer", {**TINY["transformer"][0], **changes}).eval()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return m


def inputs(m, x: torch.Tensor) -> torch.Tensor:
    """x (B, T) -> the step inputs (B, T) for positions 0..T-1: the start symbol, then x shifted right."""
    return torch.cat([torch.full_like(x[:, :1], m.config.vocab_size), x[:, :-1]], dim=1)


def feed_in_chunks(m, x: torch.Tensor, sizes, start=None, state=None) -> torch.Tensor:
    """Teacher-force x (B, T) through ``step`` in chunks of the given sizes -> logits (B, T, V). Row b's
    elements are at positions start[b].. (start (B,) int64, zeros by default) and its state is ``state``
    (the initial state by default): a row may be mid-sequence while another begins."""
    start = torch.zeros(len(x), dtype=torch.long) if start is None else start
    u = inputs(m, x) if state is None else x
    state, out, done = m.init_state(len(x)) if state is None else state, [], 0
    for size in sizes:
        logits, state = m.step(u[:, done:done + size], start + done, state)
        out.append(logits)
        done += size
    assert done == x.shape[1]
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("sizes", [[1] * (3 * W), [W] * 3, [5, W, 1, 3, 2, 1]], ids=["steps", "windows", "mixed"])
def test_rollout_equals_forward_at_three_windows(sizes):
    """T = 3W: the ring buffer wraps twice, whatever the chunking of the steps (prefill)."""
    m = model()
    x = torch.randint(0, m.config.vocab_size, (3, 3 * W), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (feed_in_chunks(m, x, sizes) - m(x)).abs().max() <= 1e-5


def test_rows_at_different_positions_equal_forward():
    """One batch whose rows join at different steps: row b runs another stream (random tokens, positions and
    state) until step o_b, then restarts from the initial state at position 0. From there each row's logits
    are those forward gives that row's sequence, through two wraps of the ring."""
    m = model()
    B, T, offsets = 3, 3 * W, [0, 2, W + 1]
    g = torch.Generator().manual_seed(4)
    x = torch.randint(0, m.config.vocab_size, (B, T), generator=g)
    u = inputs(m, x)  # (B, T)
    init = m.init_state(B)
    state = {name: torch.randn(t.shape, generator=g) for name, t in init.items()}  # mid-stream rows
    pos = torch.randint(0, 10 * W, (B,), generator=g)
    got = torch.zeros(B, T, m.config.vocab_size)
    with torch.no_grad():
        for step in range(T + max(offsets)):
            token = torch.randint(0, m.config.vocab_size, (B, 1), generator=g)  # the other streams' tokens
            for b, o in enumerate(offsets):
                if step == o:  # row b joins: its state reset, position 0
                    pos[b] = 0
                    for name in state:
                        state[name][b] = init[name][b]
                if o <= step < o + T:
                    token[b] = u[b, step - o]
            logits, state = m.step(token, pos, state)  # (B, 1, V)
            for b, o in enumerate(offsets):
                if o <= step < o + T:
                    got[b, step - o] = logits[b, 0]
            pos = pos + 1
        assert (got - m(x)).abs().max() <= 1e-5


def state_after(m, u: torch.Tensor) -> dict[str, torch.Tensor]:
    """The state after stepping the inputs u (1, T) one at a time from the initial state."""
    state = m.init_state(1)
    for t in range(u.shape[1]):
        state = m.step(u[:, t:t + 1], torch.tensor([t]), state)[1]
    return state


@pytest.mark.parametrize("sizes", [[W] * 2, [5, W, 1, 3, 2, 1]], ids=["windows", "mixed"])
def test_prefill_chunks_with_a_position_per_row(sizes):
    """Rows whose prompts so far have different lengths o_b take the same chunks at positions o_b + done:
    each row's logits are forward's for its own sequence."""
    m = model()
    offsets = torch.tensor([0, 3, W + 2])  # (B,)
    T = sum(sizes)
    x = torch.randint(0, m.config.vocab_size, (3, int(offsets.max()) + T), generator=torch.Generator().manual_seed(5))
    u = inputs(m, x)
    with torch.no_grad():
        states = [state_after(m, u[b:b + 1, :o]) for b, o in enumerate(offsets.tolist())]  # each row alone
        state = {name: torch.cat([s[name] for s in states]) for name in states[0]}
        chunk = torch.stack([u[b, o:o + T] for b, o in enumerate(offsets.tolist())])  # (B, T)
        got = feed_in_chunks(m, chunk, sizes, start=offsets, state=state)  # (B, T, V)
        want = torch.stack([m(x)[b, o:o + T] for b, o in enumerate(offsets.tolist())])
    assert (got - want).abs().max() <= 1e-5


def test_step_writes_only_the_new_slots():
    """A step of S elements changes row b's ring in slots (pos[b] + j) mod W alone, there to the new keys and
    values; the input state is left as it was."""
    m, S = model(), 3
    pos = torch.tensor([0, W + 2, 5 * W - 1])  # (B,)
    state = {name: torch.randn_like(t) for name, t in m.init_state(3).items()}
    before = {name: t.clone() for name, t in state.items()}
    with torch.no_grad():
        _, new = m.step(torch.zeros(3, S, dtype=torch.long), pos, state)
    for name, t in state.items():
        assert torch.equal(t, before[name])
        axis = 2 if name.endswith(".key") else 1  # a row's keys (nh, hd, W), values (nh, W, hd)
        for b in range(3):
            written = (pos[b] + torch.arange(S)) % W  # (S,)
            kept = torch.ones(W, dtype=torch.bool).index_fill(0, written, False)  # (W,)
            old, out = t[b].movedim(axis, 0), new[name][b].movedim(axis, 0)  # (W, ...)
            assert torch.equal(out[kept], old[kept]) and (out[written] != old[written]).all()


def test_window_bounds_attention():
    """With one layer, the logits at t depend on x_{t-W}..x_{t-1} only."""
    m = model(layers=1)
    x = torch.randint(0, m.config.vocab_size, (1, 4 * W), generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[0, :2 * W] = (y[0, :2 * W] + 1) % m.config.vocab_size  # change everything before t - W for t = 3W
    with torch.no_grad():
        a, b = m(x)[0], m(y)[0]
    assert (a[3 * W:] - b[3 * W:]).abs().max() <= 1e-5  # positions >= 3W see only x_{t-W}..x_{t-1}
    assert (a[2 * W] - b[2 * W]).abs().max() > 1e-3  # position 2W sees x_{2W-1}, which changed


def test_step_refuses_chunks_longer_than_the_window():
    m = model()
    with pytest.raises(ValueError, match="1..6 elements"):
        m.step(torch.zeros(1, W + 1, dtype=torch.long), torch.tensor(0), m.init_state(1))


def test_rotation_is_exact_far_from_the_start():
    """Scores depend on relative positions only, and stay exact at position 10**9 (angles in float64)."""
    q, k = torch.randn(2, 1, 1, 4, 8, dtype=torch.float32).unbind(0)  # (1, 1, 4, hd) each

    def scores(offset):
        pos = torch.arange(4) + offset
        return rotate(q, *rotary(pos, 8)) @ rotate(k, *rotary(pos, 8)).transpose(-1, -2)  # (1, 1, 4, 4)

    assert (scores(10**9) - scores(0)).abs().max() <= 1e-5


def test_scoring_pieces_give_each_element_its_full_receptive_field():
    m = model(layers=2)
    R = m.receptive_field
    assert R == 2 * (W - 1) + 1
    x = torch.randint(0, m.config.vocab_size, (10 * R,), generator=torch.Generator().manual_seed(2))

    def logp(pieces) -> torch.Tensor:
        """log p of every scored element, in order (T,)."""
        out = []
        for piece, skip in pieces:
            all_logp = torch.log_softmax(m(torch.as_tensor(piece)[None])[0], -1)  # (T, V)
            out.append(all_logp[skip:].gather(1, torch.as_tensor(piece)[skip:, None])[:, 0])
        return torch.cat(out)

    with torch.no_grad():
        whole = logp([(x.numpy(), 0)])
        assert (logp(chunks(x.numpy(), 0, R)) - whole).abs().max() <= 1e-5
        assert (logp(chunks(x.numpy(), 0, R - 1)) - whole).abs().max() > 1e-5  # one predecessor fewer shows
    assert sum(len(p) - s for p, s in chunks(x.numpy(), 0, R)) == len(x)


def test_ring_buffer_graph_runs_far_past_the_window():
    """The exported step graph at position 10**6 and beyond: constant shapes, finite logits, and prefill of a
    prompt longer than the window gives the step-by-step logits."""
    runtime = open_model(exported("transformer", "step"))
    assert (runtime.info.window, runtime.info.step_tokens, runtime.info.max_length) == (W, W, 0)
    stepper = Stepper(runtime, 2)
    tokens = np.random.default_rng(3).integers(0, runtime.info.vocab_size, (2, 5 * W + 3))
    stepper.reset()
    chunked = prefill(stepper, tokens, np.zeros(2, np.int64))
    stepper.reset()
    stepped = np.stack([stepper.step(tokens[:, t], np.full(2, t)).copy() for t in range(tokens.shape[1])], axis=1)
    assert np.abs(chunked - stepped).max() <= 1e-5
    assert np.isfinite(stepper.step(tokens[:, 0], np.array([10**6, 10**6 + W]))).all()


def in_place_violations(graph: onnx.GraphProto) -> list[str]:
    """The in-place rule (docs/contract.md), checked on a step graph: each state output ``present.X`` is a
    ScatterElements/ScatterND whose data is the input ``past_key_values.X`` itself, every other node reading that
    input is an ancestor of the scatter (so every read runs before the write, in any order an executor picks),
    and no subgraph reads it. -> what breaks it, one line each (empty: the graph obeys it)."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}

    def ancestors(i: int) -> set[int]:
        seen, todo = set(), [i]
        while todo:
            for name in graph.node[todo.pop()].input:
                if name in producer and producer[name] not in seen:
                    seen.add(producer[name])
                    todo.append(producer[name])
        return seen

    def reads_in_subgraph(node, name: str) -> bool:
        subgraphs = [g for a in node.attribute for g in [a.g] * a.HasField("g") + list(a.graphs)]
        return any(name in n.input or reads_in_subgraph(n, name) for g in subgraphs for n in g.node)

    problems = []
    for state_in in (i.name for i in graph.input if i.name.startswith("past_key_values.")):
        state_out = state_in.replace("past_key_values.", "present.")
        writer = producer.get(state_out)
        if writer is None or graph.node[writer].op_type not in ("ScatterElements", "ScatterND") \
                or graph.node[writer].input[0] != state_in:
            problems.append(f"{state_out} is not a scatter into {state_in}")
            continue
        before = ancestors(writer)
        for i, node in enumerate(graph.node):
            if i != writer and state_in in node.input and i not in before:
                problems.append(f"{node.op_type} {node.name} reads {state_in} but the write does not wait for it")
            if reads_in_subgraph(node, state_in):
                problems.append(f"a subgraph of {node.op_type} {node.name} reads {state_in}")
    return problems


def test_step_graph_moves_no_ring_and_writes_after_every_read(tmp_path):
    """In the exported step graph each ring is read only by its attention product (MatMul, in the layout it is
    stored in; Shape reads no data) and written by one scatter of the new slots that yields the matching output
    and depends on both products that read the ring: no Concat, Gather or Transpose of a ring per step, and
    the in-place rule holds, also after onnxruntime's own optimisations."""
    import onnxruntime as ort

    path = exported("transformer", "step")
    graph = onnx.load(path).graph
    rings = [i.name for i in graph.input if i.name.startswith("past_key_values.")]
    assert len(rings) == 2 * TINY["transformer"][0]["layers"]
    for name in rings:
        readers = sorted(n.op_type for n in graph.node if name in n.input and n.op_type != "Shape")
        assert readers == ["MatMul", "ScatterND"], name
    assert in_place_violations(graph) == []
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    assert in_place_violations(onnx.load(tmp_path / "optimized.onnx").graph) == []
    # Cut the dependency (read the slots before the where(c, slots, slots) that waits for the products, as in
    # 4e2ef10): the checker sees writes that do not wait for the reads.
    waits = {n.output[0]: n.input[1] for n in graph.node if n.op_type == "Where" and n.input[1] == n.input[2]}
    assert len(waits) == TINY["transformer"][0]["layers"]
    for node in graph.node:
        node.input[:] = [waits.get(name, name) for name in node.input]
    assert len(in_place_violations(graph)) == len(rings)


def rollout_onnx(path, tokens: np.ndarray, start: np.ndarray, aliased: bool) -> tuple[np.ndarray, dict]:
    """Roll the step graph over tokens (B, T), row b from position start[b], from the initial (zero) state ->
    (logits (B, T, V), final state). ``aliased``: each state is one OrtValue bound as both its input and its
    output (IO binding), as a runtime does for an in_place state; else every step's state outputs are new arrays."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    B = len(tokens)
    state = {i.name: np.zeros((B, *i.shape[1:]), np.float32) for i in session.get_inputs()
             if i.name.startswith("past_key_values.")}
    out_names = {name: name.replace("past_key_values.", "present.") for name in state}
    logits = []
    if aliased:
        io = session.io_binding()
        io.bind_output("logits")  # the first output bound: copy_outputs_to_cpu()[0]
        buffers = {name: ort.OrtValue.ortvalue_from_numpy(array) for name, array in state.items()}
        for name, buffer in buffers.items():
            io.bind_ortvalue_input(name, buffer)
            io.bind_ortvalue_output(out_names[name], buffer)
    for t in range(tokens.shape[1]):
        feeds = {"input_ids": tokens[:, t:t + 1], "position": start + t}
        if aliased:
            for name, array in feeds.items():
                io.bind_cpu_input(name, np.ascontiguousarray(array))
            session.run_with_iobinding(io)
            logits.append(io.copy_outputs_to_cpu()[0])
        else:
            outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {**feeds, **state})))
            logits.append(outputs["logits"])
            state = {name: outputs[out] for name, out in out_names.items()}
    if aliased:
        state = {name: buffer.numpy().copy() for name, buffer in buffers.items()}  # before the buffers go
    return np.concatenate(logits, axis=1), state


def test_one_buffer_per_state_gives_the_separate_buffer_rollout_bit_for_bit():
    """Binding one buffer as each ring's input and output (the scatter writes in place) changes nothing,
    bit for bit, through two wraps of the ring, with rows at different positions."""
    tokens = np.random.default_rng(6).integers(0, len(TINY["transformer"][1]["alphabet"]), (3, 2 * W + 3))
    start = np.array([0, 4, 10**6], np.int64)
    path = exported("transformer", "step")
    separate, aliased = rollout_onnx(path, tokens, start, False), rollout_onnx(path, tokens, start, True)
    assert np.array_equal(separate[0], aliased[0])
    assert all(np.array_equal(separate[1][name], aliased[1][name]) for name in separate[1])


# ---- a trained tiny model: scoring, sampling, streaming, onnxruntime-genai ----------------------------

def ok(app, *args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny windowed Transformer fitted on a repetitive text (so greedy decoding is not constant)."""
    root = tmp_path_factory.mktemp("window")
    (root / "text.txt").write_text(TEXT)
    (root / "config.json").write_text(json.dumps({
        "family": "transformer", "data": str(root / "text.txt"), "steps": 150, "batch_size": 8, "lr": 1e-2,
        "warmup": 10, "eval_every": 150, "seq_len": 32, "text_as": "characters",
        "model": {"layers": 2, "d_model": 32, "heads": 2, "window": 8}}))
    ok(artrain, "fit", "--config", root / "config.json", "--out", root / "run")
    for graph in ("step", "full"):
        ok(arexport, "onnx", root / "run", f"--{graph}-graph")
    ok(arexport, "genai", root / "run", "--out", root / "genai", "--max-length", "256")
    return root / "run"


def test_scores_agree_three_ways(run):
    """arrun score on the full graph (overlapping pieces) = on the step graph (the rollout) = artrain eval."""
    data = run.parent / "text.txt"
    full = json.loads(ok(arrun, "score", run / "full.onnx", data, "--json"))
    step = json.loads(ok(arrun, "score", run / "step.onnx", data, "--json"))
    evaluated = json.loads(ok(artrain, "eval", run, "--data", data, "--json"))
    assert full["n_dims"] == step["n_dims"] == evaluated["n_dims"] == len(TEXT)
    assert abs(full["bits_per_dim"] - step["bits_per_dim"]) < 1e-4
    assert abs(full["bits_per_dim"] - evaluated["bits_per_dim"]) < 1e-3
    assert full["bits_per_dim"] < 1.0  # it learned the text


def test_long_prompt_and_length_beyond_the_window(run):
    """A prompt of 5 windows is prefilled; greedy sampling continues the text it learned, far past W."""
    prompt = TEXT[:40]
    text = ok(arrun, "sample", run / "step.onnx", "--prompt", prompt, "--length", "300", "--top-k", "1")
    assert text.startswith(prompt) and len(text.rstrip("\n")) == 340
    assert "the cat sat on the mat" in text[40:]


def test_genai_greedy_equals_arrun(run):
    """onnxruntime-genai's own generator loop on the exported folder picks arrun's greedy tokens for 200
    steps from the same prompt ids, past the window many times."""
    og = pytest.importorskip("onnxruntime_genai")  # in the dev extras: skipped only where it is not installed
    info = open_model(run / "step.onnx").info
    prompt = [info.start_token] + [info.alphabet.index(c) for c in "a dog ate"]
    config = og.Config(str(run.parent / "genai"))
    config.clear_providers()
    model = og.Model(config)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + 200, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array([prompt], np.int32))
    theirs = []
    while not generator.is_done():
        generator.generate_next_token()
        theirs.append(int(generator.get_next_tokens()[0]))
    text = ok(arrun, "sample", run / "step.onnx", "--prompt", "a dog ate", "--length", "200", "--top-k", "1")
    ours = [info.alphabet.index(c) for c in text[len("a dog ate"):len("a dog ate") + 200]]
    assert len(theirs) == 200 and theirs == ours
    assert len(set(ours)) > 5  # a real sequence, not one repeated token


def test_genai_export_refuses_other_families(tmp_path):
    from conftest import tiny_model
    result = CliRunner().invoke(arexport, ["genai", str(tiny_model("wavenet")[1]), "--out", str(tmp_path / "g")])
    assert result.exit_code == 2 and "KV-cache decoders" in result.stderr and not (tmp_path / "g").exists()


def test_text_streams_and_has_no_length_cap(run):
    """`arrun sample --length 10**7` (hours of text) writes it to a pipe as it goes (a line at a time): the
    first lines arrive while the run is far from done."""
    env = {**os.environ, "PYTHONUNBUFFERED": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "arrun", "sample", str(run / "step.onnx"), "--length",
                             str(10**7), "--top-k", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert proc.poll() is None  # still generating
        assert all(line.endswith(b"\n") for line in lines) and b"the" in b"".join(lines)
    finally:
        proc.kill()
        proc.wait()


def test_format_version_1_is_refused_in_one_line(tmp_path):
    proto = onnx.load(exported("transformer", "step"))
    for prop in proto.metadata_props:
        if prop.key == "ar.format_version":
            prop.value = "1"
    onnx.save(proto, tmp_path / "old.onnx")
    result = CliRunner().invoke(arrun, ["sample", str(tmp_path / "old.onnx")])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "format version 1" in result.stderr and "re-export" in result.stderr


@pytest.mark.parametrize("args,fragment", [
    (["--prompt", "the cat ~"], "'~'"),
    (["--length", "0"], "--length must be >= 1"),
])
def test_bad_sampling_input_is_one_line(run, args, fragment):
    result = CliRunner().invoke(arrun, ["sample", str(run / "step.onnx"), *args])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1 and fragment in result.stderr


def test_window_larger_than_the_data_is_one_line(tmp_path):
    (tmp_path / "short.txt").write_text("a short text\n")
    result = CliRunner().invoke(artrain, ["fit", "--model", "transformer", "--data", str(tmp_path / "short.txt"),
                                          "--steps", "1", "--out", str(tmp_path / "run")])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 2 and len(errors) == 1 and "too short" in errors[0], result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
