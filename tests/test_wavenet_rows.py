"""The WaveNet step with a position per row (format 6): a batch whose rows started at different steps gives
each row what ``forward`` gives it, and the exported step writes its ring in place (one ScatterElements that
depends by data on every read of the ring)."""
import onnx
import pytest
import torch

from arexport import inplace
from arexport.graphs import EXAMPLE_BATCH
from arrun.contract.schema import BATCH_DIM
from conftest import VOCODER
from test_models import make

CONFIGS = {  # name -> (num_classes, overrides)
    "plain": (0, {}),
    "class": (3, {}),
    "vocoder": (0, VOCODER),
    "mixture-class": (3, dict(vocab_size=1024, mixtures=2)),
    "mixture-vocoder": (2, dict(VOCODER, vocab_size=1024, mixtures=2)),
}


def staggered_rollout(model, x, cond, frames, offsets):
    """Logits (B, T, V): row b joins the batch at step offsets[b] (its state reset to the initial state, its
    position 0) and is fed its own x[b, :T - offsets[b]] with teacher forcing; rows are returned aligned to
    their own position 0. Rows not yet joined step along with junk input at position 0."""
    B, T = x.shape
    start, initial = model.config.vocab_size, model.init_state(B)
    vectors = model.frame_vectors(frames) if frames is not None else None  # (B, F, D)
    hop = model.config.mel_hop
    state = {name: torch.randn_like(s) for name, s in initial.items()}  # rubbish before a row joins
    out = torch.zeros(B, T, model.output_width)
    junk = torch.randint(0, start, (B,), generator=torch.Generator().manual_seed(9))
    for step in range(T + max(offsets)):
        pos = torch.tensor([step - o for o in offsets])  # (B,)
        joining = pos == 0
        for name in state:  # a joining row's state is reset
            state[name] = torch.where(joining.view(-1, *[1] * (state[name].dim() - 1)), initial[name], state[name])
        live = (pos >= 0) & (pos < T)
        p = pos.clamp(0, T - 1)
        prev = x[torch.arange(B), (p - 1).clamp(min=0)]
        token = torch.where(p == 0, start, torch.where(live, prev, junk))
        p = torch.where(live, p, 0)  # a row not running steps at position 0
        local = {"features": vectors[torch.arange(B), p // hop]} if vectors is not None else {}
        logits, state = model.step(token, p, state, cond, **local)
        for b in range(B):
            if live[b]:
                out[b, pos[b]] = logits[b]
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_rows_at_different_positions_equal_forward(name):
    num_classes, overrides = CONFIGS[name]
    model = make("wavenet", num_classes, **overrides)
    B, T = 4, 2 * model.state_period + 7  # every ring wraps twice
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, model.config.vocab_size, (B, T), generator=g)
    cond = torch.randint(0, num_classes, (B,), generator=g) if num_classes else None
    frames = None
    if model.config.mel_bins:
        frames = torch.randn(B, model.feature_spec.frames(T), model.config.mel_bins, generator=g) * 2 - 5
    with torch.no_grad():
        parallel = model(x, cond, features=frames) if frames is not None else model(x, cond)
        stepped = staggered_rollout(model, x, cond, frames, offsets=[0, 3, model.state_period - 1, 11])
    assert (parallel - stepped).abs().max().item() <= 1e-5


@pytest.mark.parametrize("vocoder", [False, True])
def test_step_graph_writes_its_ring_in_place(vocoder):
    """One ScatterND writes the ring; the ring is read by one Gather of the taps (through a Reshape, which
    copies nothing), never copied, concatenated or transposed whole; no node computes from weights alone; and the
    onnxruntime step with ONE buffer bound as in.queue and out.queue rolls the same logits, bit for bit, as with
    separate buffers, rows at different positions, through two wraps of every ring."""
    import numpy as np
    import onnxruntime as ort
    from conftest import KIND, exported, exported_vocoder, tiny_model, tiny_vocoder

    path, model = (exported_vocoder("step"), tiny_vocoder(0)[0]) if vocoder else (exported(KIND["audio"]),
                                                                                  tiny_model("wavenet")[0])
    graph = onnx.load(path).graph
    assert inplace.state_structure(graph, "queue") == (True, "")
    readers = sorted(node.op_type for node in graph.node if "in.queue" in node.input)
    assert readers == ["Reshape", "ScatterND"]
    flat = next(node.output[0] for node in graph.node if node.op_type == "Reshape" and "in.queue" in node.input)
    assert [node.op_type for node in graph.node if flat in node.input] == ["Gather"]
    live = {i.name for i in graph.input}  # values that vary per call
    for node in graph.node:  # topological order
        assert not node.input or live & set(node.input), f"{node.name} recomputes a constant every step"
        live.update(node.output)
    position = next(i for i in graph.input if i.name == "position")
    assert [d.dim_param or d.dim_value for d in position.type.tensor_type.shape.dim] == [BATCH_DIM]

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    B, steps, R, C = 3, 2 * model.state_period + 5, *model.state_spec()[0].shape
    rng = np.random.default_rng(0)
    feeds = {"features": rng.standard_normal((steps, B, model.config.mel_bins)).astype(np.float32)} if vocoder else {}
    tokens = rng.integers(0, model.config.vocab_size, (steps, B))
    offsets = np.array([0, 2, 7])

    def roll(aliased: bool) -> np.ndarray:
        queue = ort.OrtValue.ortvalue_from_numpy(np.zeros((B, R, C), np.float32))
        other = ort.OrtValue.ortvalue_from_numpy(np.zeros((B, R, C), np.float32))
        binding, out = session.io_binding(), []
        for t in range(steps):
            binding.bind_cpu_input("input_ids", tokens[t])
            binding.bind_cpu_input("position", np.maximum(t - offsets, 0))
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value[t])
            binding.bind_ortvalue_input("in.queue", queue)
            binding.bind_ortvalue_output("out.queue", queue if aliased else other)
            binding.bind_output("logits")
            session.run_with_iobinding(binding)
            out.append(binding.copy_outputs_to_cpu()[0])
            if not aliased:
                queue, other = other, queue
        return np.stack(out)

    assert np.array_equal(roll(True), roll(False))
