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


def feed_in_chunks(m, x: torch.Tensor, sizes) -> torch.Tensor:
    """Teacher-force x (B, T) through ``step`` in chunks of the given sizes -> logits (B, T, V)."""
    u = torch.cat([torch.full_like(x[:, :1], m.config.vocab_size), x[:, :-1]], dim=1)  # inputs at 0..T-1
    state, out, done = m.init_state(len(x)), [], 0
    for size in sizes:
        logits, state = m.step(u[:, done:done + size], torch.tensor(done), state)
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
    chunked = prefill(stepper, tokens)
    stepper.reset()
    stepped = np.stack([stepper.step(tokens[:, t], t).copy() for t in range(tokens.shape[1])], axis=1)
    assert np.abs(chunked - stepped).max() <= 1e-5
    assert np.isfinite(stepper.step(tokens[:, 0], 10**6)).all()


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
        "warmup": 10, "eval_every": 150, "seq_len": 32,
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
