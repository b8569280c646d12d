"""Local conditioning: the WaveNet vocoder, its chunk graph (sampling inside the graph), `arrun vocode` and
`arrun sample --features`, and the errors a user can run into."""
import io
import wave

import numpy as np
import onnx
import pytest
import torch
from scipy.stats import chisquare
from typer.testing import CliRunner

from arexport.verify import verify_onnx
from arrun.cli import app
from arrun.contract.codecs import audio_encode, mulaw_encode, resample_poly
from arrun.contract.features import mulaw_features
from arrun.runtime import ChunkSampler, Stepper
from arrun.sampling import sample_categorical, softmax
from arrun.session import open_model
from conftest import KIND, VOCODER, exported, exported_vocoder, tiny_vocoder
from test_arrun_errors import assert_error
from test_models import make

RATE = 16000


def frames_for(model, batch: int, samples: int, seed: int = 0) -> np.ndarray:
    """Random log-mel-like frames (B, F, M) for ``samples`` samples."""
    spec = model.feature_spec
    return (np.random.default_rng(seed).standard_normal((batch, spec.frames(samples), spec.n_mels)) * 2 - 5).astype(np.float32)


@pytest.mark.parametrize("num_classes, normalise", [(0, False), (3, False), (0, True)])
@pytest.mark.parametrize("batch", [1, 3])
def test_step_rollout_equals_forward_with_features(num_classes, normalise, batch):
    model = make("wavenet", num_classes, **VOCODER, mel_normalise=normalise)
    T = 3 * model.state_period + 5  # every ring wraps; a frame every 4 samples
    g = torch.Generator().manual_seed(batch)
    x = torch.randint(0, 256, (batch, T), generator=g)
    cond = torch.randint(0, num_classes, (batch,), generator=g) if num_classes else None
    frames = torch.from_numpy(frames_for(model, batch, T))
    with torch.no_grad():
        parallel = model(x, cond, features=frames)
        vectors, state, token, stepped = model.frame_vectors(frames), model.init_state(batch), torch.full((batch,), 256), []
        for t in range(T):
            logits, state = model.step(token, torch.full((batch,), t), state, cond,
                                       features=vectors[:, t // VOCODER["mel_hop"]])
            stepped.append(logits)
            token = x[:, t]
    assert (parallel - torch.stack(stepped, 1)).abs().max().item() <= 1e-5
    other = frames.clone()
    other[:, 3] += 1  # frame 3 conditions samples 12..15 and nothing else
    with torch.no_grad():
        changed = (model(x, cond, features=other) - parallel).abs().amax(dim=(0, 2))  # (T,)
    assert changed[:12].max() == 0 and changed[12:16].min() > 0


def test_normalised_frames_are_the_log_range_mapped_onto_plus_minus_one():
    plain, normalised = make("wavenet", 0, **VOCODER), make("wavenet", 0, **VOCODER, mel_normalise=True)
    frames = torch.from_numpy(frames_for(plain, 2, 40))  # (B, F, M)
    floor = np.log(plain.feature_spec.log_floor)  # ln(1e-5): silence
    mapped = (frames - floor) / (0 - floor) * 2 - 1  # [floor, 0] -> [-1, 1]
    with torch.no_grad():
        assert torch.allclose(normalised.frame_vectors(frames), plain.frame_vectors(mapped), atol=1e-5)
    with pytest.raises(ValueError, match="mel_normalise.*true or false"):
        make("wavenet", 0, **VOCODER, mel_normalise=1)


@pytest.mark.parametrize("graph", ["step", "full", "chunk"])
def test_export_verifies_every_graph_of_a_vocoder(graph):
    model, _ = tiny_vocoder(3)
    report = verify_onnx(exported_vocoder(graph, 3), model)
    assert report.passed and report.comparisons[0].positions >= 2 * model.state_period + 1


def sample_cli(*args):
    result = CliRunner().invoke(app, ["sample", *map(str, args)])
    assert result.exit_code == 0, result.stderr
    return result


@pytest.mark.parametrize("vocoder", [True, False])
def test_chunk_graph_samples_what_the_step_loop_samples(tmp_path, vocoder):
    """Same seed, same samples: the chunk graph (several chunks of generate.CHUNK) and the step loop."""
    if vocoder:
        model, _ = tiny_vocoder(0)
        np.save(tmp_path / "f.npy", frames_for(model, 1, 2500)[0])
        graphs, extra = [exported_vocoder(g) for g in ("step", "chunk")], ["--features", tmp_path / "f.npy"]
    else:
        graphs, extra = [exported(KIND["audio"], g) for g in ("step", "chunk")], ["--length", 2500]
    for graph, name in zip(graphs, ("step", "chunk")):
        sample_cli(graph, *extra, "-n", 2, "--seed", 5, "--out", tmp_path / f"{name}.wav")
    for i in range(2):
        step, chunk = ((tmp_path / f"{name}-00{i}.wav").read_bytes() for name in ("step", "chunk"))
        assert step == chunk and len(step) > 4000
    assert (tmp_path / "step-000.wav").read_bytes() != (tmp_path / "step-001.wav").read_bytes()


@pytest.mark.parametrize("graph", [lambda: exported_vocoder("chunk"), lambda: exported(KIND["audio"], "chunk")])
def test_chunk_loop_body_holds_only_work_that_changes_per_element(graph):
    """Every node of each Loop body (the blocks', then the rest's) reads, directly or through other body nodes,
    the iteration index or a value carried from the previous iteration: the batch's row indices and each row's
    base in the flat state are computed once per chunk, before the loops."""
    proto = onnx.load(graph())
    loops = [n for n in proto.graph.node if n.op_type == "Loop"]
    assert len(loops) == 2
    for loop in loops:
        body = loop.attribute[0].g
        varying = {v.name for v in body.input}  # i, cond, token, state
        for node in body.node:
            assert any(v in varying for v in node.input), f"{node.op_type} {list(node.input)} is the same every time"
            varying.update(node.output)
        assert not {"Range", "Expand", "Shape"} & {n.op_type for n in body.node}


def test_chunk_graph_writes_the_ring_once_per_block():
    """The first Loop draws ``chunk_block`` elements per iteration (one CumSum per draw) and writes the ring
    with one ScatterND; the second draws one element per iteration."""
    from artrain.models.wavenet import WaveNet

    blocks, rest = (n.attribute[0].g for n in onnx.load(exported_vocoder("chunk")).graph.node if n.op_type == "Loop")
    for body, draws in ((blocks, WaveNet.chunk_block), (rest, 1)):
        ops = [n.op_type for n in body.node]
        assert (ops.count("CumSum"), ops.count("ScatterND")) == (draws, 1)


ROLLED = [(0, dict(VOCODER, lpc_order=4)),  # a source-filter vocoder whose taps all fall inside a block of 16
          (3, dict(VOCODER)),  # features and a class
          (0, dict(layers_per_stack=6, stacks=2)),  # dilations 1 .. 32: the later layers read only the ring
          (3, dict(layers_per_stack=4, kernel_size=4))]  # dilations 1 .. 64


@pytest.mark.parametrize("num_classes, overrides", ROLLED)
@pytest.mark.parametrize("length", [1, 5, 16, 40])
def test_roll_by_blocks_is_the_step_loop(num_classes, overrides, length):
    """``WaveNet.roll`` (what the chunk graph unrolls) draws the tokens and leaves the state of the step loop
    (``ARModel.roll``), for rows at their own positions, after 50 elements that fill every ring."""
    from arexport.chunk import sample_inverse_cdf
    from artrain.models.base import ARModel

    model = make("wavenet", num_classes, **overrides)
    B, before = 3, 50
    g = torch.Generator().manual_seed(length)
    cond = torch.randint(0, num_classes, (B,), generator=g) if num_classes else None
    u = torch.rand(B, before + length, dtype=torch.float64, generator=g)  # (B, T)
    vectors = None
    if model.feature_spec:  # any vector per element: roll reads element s's from vectors[:, s]
        frames = frames_for(model, B, (before + length) * model.feature_spec.hop)  # one frame per element
        vectors = model.frame_vectors(torch.from_numpy(frames))  # (B, T, D)

    def roll(fn, token, pos, state, start, n):
        local = None if vectors is None else vectors[:, start:start + n]
        return fn(token, pos, state, lambda logits, s: sample_inverse_cdf(logits, u[:, start + s]), n, cond, local)

    pos = torch.tensor([0, 7, 300])
    with torch.no_grad():
        start = torch.full((B,), model.config.vocab_size)
        tokens, state = roll(lambda *a: ARModel.roll(model, *a), start, pos, model.init_state(B), 0, before)
        want, want_state = roll(lambda *a: ARModel.roll(model, *a), tokens[:, -1], pos + before, state, before, length)
        got, got_state = roll(model.roll, tokens[:, -1], pos + before, state, before, length)
    assert torch.equal(got, want)
    assert got_state.keys() == want_state.keys()
    for name in want_state:
        torch.testing.assert_close(got_state[name], want_state[name], atol=1e-5, rtol=0)


def test_in_graph_sampler_has_the_softmax_distribution():
    """One draw per row from the initial state: the chunk graph's and numpy's draws both fit softmax(logits)."""
    runtime, chunk = open_model(exported(KIND["audio"], "step")), open_model(exported(KIND["audio"], "chunk"))
    rows = 40_000
    stepper = Stepper(runtime, 1)
    stepper.reset()
    p = softmax(stepper.step(np.array([256]), np.zeros(1, np.int64)).copy())[0]  # (V,)
    u = np.random.default_rng(0).random((rows, 1))
    sampler = ChunkSampler(chunk, rows)
    sampler.reset()
    in_graph = sampler.sample(np.full(rows, 256), np.zeros(rows, np.int64), u)[:, 0]
    in_numpy = sample_categorical(np.log(np.tile(p, (rows, 1))), u[:, 0])
    bins = np.where(p * rows >= 5, np.arange(len(p)), len(p))  # chi-square wants >= 5 expected: pool the rest
    expected = np.bincount(bins, p * rows, minlength=len(p) + 1)
    used = expected > 0
    for draws in (in_graph, in_numpy):
        observed = np.bincount(bins[draws], minlength=len(p) + 1)
        assert chisquare(observed[used], expected[used]).pvalue > 1e-3
    assert (in_graph == in_numpy).mean() > 0.999  # same uniforms: the same draw but at float rounding edges


def write_wav(path, x: np.ndarray, rate: int, channels: int = 1) -> None:
    pcm = (np.clip(np.repeat(x[:, None], channels, 1), -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def read_wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


def test_vocode_resynthesises_any_wav_and_streams(tmp_path):
    t = np.arange(22050 // 4) / 22050
    write_wav(tmp_path / "in.wav", 0.5 * np.sin(2 * np.pi * 220 * t) * np.exp(-3 * t), 22050, channels=2)
    graph = exported_vocoder("chunk")
    result = CliRunner().invoke(app, ["vocode", str(graph), str(tmp_path / "in.wav"), "--out",
                                      str(tmp_path / "out.wav"), "--json"])
    assert result.exit_code == 0, result.stderr
    samples, rate = read_wav_samples((tmp_path / "out.wav").read_bytes())
    assert rate == RATE and len(samples) == -(-len(t) * 320 // 441)  # the input's length at 16 kHz
    streamed = CliRunner().invoke(app, ["vocode", str(graph), str(tmp_path / "in.wav"), "--out", "-"])
    assert streamed.exit_code == 0 and streamed.stdout_bytes == (tmp_path / "out.wav").read_bytes()
    # the same as sampling the step graph given the features of the resampled, mu-law coded input
    x = np.frombuffer((tmp_path / "in.wav").read_bytes()[44:], "<i2").reshape(-1, 2).mean(1) / 32768
    codes = mulaw_encode(resample_poly(x, 22050, RATE))
    np.save(tmp_path / "f.npy", mulaw_features(codes, tiny_vocoder(0)[0].feature_spec, 256))
    sample_cli(exported_vocoder("step"), "--features", tmp_path / "f.npy", "--length", len(codes),
               "--out", tmp_path / "step.wav")
    assert (tmp_path / "step.wav").read_bytes() == (tmp_path / "out.wav").read_bytes()


def test_vocode_codes_a_16_bit_vocoder_s_input_as_16_bit_samples(tmp_path):
    """A 16-bit vocoder (65,536 levels, mixture head) is conditioned on the features of the WAV's 16-bit samples,
    as at training, not of a mu-law coding with 65,535 as mu."""
    from arexport.export import export_onnx
    from conftest import VOCODER_DATA, make_checkpoint

    model, ckpt = make_checkpoint(tmp_path / "ckpt", "wavenet", data=dict(VOCODER_DATA, levels=65536),
                                  vocab_size=65536, mixtures=2, **VOCODER)
    export_onnx(ckpt, tmp_path / "step.onnx", graph="step", verify=False)
    x = 0.5 * np.sin(2 * np.pi * 220 * np.arange(1200) / RATE)
    write_wav(tmp_path / "in.wav", x, RATE)
    result = CliRunner().invoke(app, ["vocode", str(tmp_path / "step.onnx"), str(tmp_path / "in.wav"), "--out",
                                      str(tmp_path / "out.wav")])
    assert result.exit_code == 0, result.stderr
    samples = np.frombuffer((tmp_path / "in.wav").read_bytes()[44:], "<i2") / 32768
    np.save(tmp_path / "f.npy", mulaw_features(audio_encode(samples, 65536), model.feature_spec, 65536))
    sample_cli(tmp_path / "step.onnx", "--features", tmp_path / "f.npy", "--length", len(samples),
               "--out", tmp_path / "step.wav")
    assert (tmp_path / "step.wav").read_bytes() == (tmp_path / "out.wav").read_bytes()


def test_a_chunk_graph_refuses_a_prompt_it_would_drop(tmp_path):
    """A WaveNet on text exports a chunk graph, which samples from the start: a prompt is refused, not ignored."""
    from arexport.export import export_onnx
    from conftest import TINY, make_checkpoint

    text = TINY["transformer"][1]
    _, ckpt = make_checkpoint(tmp_path / "ckpt", "wavenet", data=text, vocab_size=text["levels"])
    export_onnx(ckpt, tmp_path / "chunk.onnx", graph="chunk", verify=False)
    (tmp_path / "out").mkdir()
    assert_error(["sample", tmp_path / "chunk.onnx", "--prompt", "abc", "--out", tmp_path / "out" / "t.txt"], 2,
                 "takes no prompt", out_dir=tmp_path / "out")


def test_score_of_a_wav_uses_its_own_features(tmp_path):
    model, _ = tiny_vocoder(0)
    x = np.random.default_rng(1).standard_normal(700) * 0.2
    write_wav(tmp_path / "a.wav", x, RATE)
    codes = mulaw_encode(np.frombuffer((tmp_path / "a.wav").read_bytes()[44:], "<i2") / 32768)
    frames = torch.from_numpy(mulaw_features(codes, model.feature_spec, 256))[None]
    with torch.no_grad():
        logits = model(torch.from_numpy(codes)[None], None, features=frames)[0]  # (T, V)
    want = torch.nn.functional.cross_entropy(logits, torch.from_numpy(codes)).item() / np.log(2)
    for graph in ("full", "step"):
        result = CliRunner().invoke(app, ["score", str(exported_vocoder(graph)), str(tmp_path / "a.wav"), "--json"])
        assert result.exit_code == 0, result.stderr
        assert abs(__import__("json").loads(result.stdout)["bits_per_dim"] - want) < 1e-4


def test_bench_reports_the_real_time_factor():
    result = CliRunner().invoke(app, ["bench", str(exported_vocoder("chunk")), "--steps", "300", "--json"])
    assert result.exit_code == 0, result.stderr
    record = __import__("json").loads(result.stdout)
    assert record["real_time_factor"] == pytest.approx(RATE / record["tokens_per_s"])
    text = CliRunner().invoke(app, ["bench", str(exported_vocoder("chunk")), "--steps", "100"])
    assert text.exit_code == 0 and "real-time factor" in text.stdout


def test_bad_vocoder_input(tmp_path):
    step, chunk = exported_vocoder("step"), exported_vocoder("chunk")
    spec = tiny_vocoder(0)[0].feature_spec
    np.save(tmp_path / "bins.npy", np.zeros((5, spec.n_mels + 1), np.float32))
    nan = np.zeros((5, spec.n_mels), np.float32)
    nan[3, 2] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.lib.format.open_memmap(tmp_path / "huge.npy", mode="w+", dtype=np.float32,
                              shape=((1 << 30) // (4 * spec.n_mels) + 1, spec.n_mels))  # sparse: no disk used
    write_wav(tmp_path / "empty.wav", np.zeros(0), RATE)
    out = tmp_path / "out"
    out.mkdir()
    assert_error(["sample", step, "--features", tmp_path / "bins.npy", "--out", out / "a.wav"], 2,
                 f"has {spec.n_mels + 1} mel bins per frame and the model takes {spec.n_mels}", out)
    assert_error(["sample", step, "--features", tmp_path / "nan.npy", "--out", out / "a.wav"], 2,
                 "NaN or infinite values (the first is frame 3)", out)
    assert_error(["sample", step, "--features", tmp_path / "huge.npy", "--out", out / "a.wav"], 2,
                 "more than the 1 GiB one run loads", out)
    assert_error(["vocode", chunk, tmp_path / "empty.wav", "--out", out / "a.wav"], 2, "holds no audio", out)
    assert_error(["vocode", exported(KIND["audio"], "chunk"), tmp_path / "empty.wav", "--out", out / "a.wav"], 2,
                 "is not a vocoder", out)
    assert_error(["sample", step, "--out", out / "a.wav"], 2, "give the features it turns into audio", out)
    assert_error(["score", chunk, tmp_path / "empty.wav"], 2, "needs the full or step graph", out)
    assert_error(["sample", exported(KIND["audio"]), "--features", tmp_path / "nan.npy"], 2, "drop --features", out)
    assert_error(["sample", chunk, "--features", tmp_path / "bins.npy", "--temperature", "0.5"], 2, "mel bins", out)
    np.save(tmp_path / "ok.npy", np.zeros((5, spec.n_mels), np.float32))
    assert_error(["sample", chunk, "--features", tmp_path / "ok.npy", "--temperature", "0.5"], 2,
                 "a chunk graph samples at temperature 1", out)
    assert_error(["sample", step, "--features", tmp_path / "ok.npy", "--length", 21], 2,
                 "5 frames describe 20 samples", out)


@pytest.mark.parametrize("N", [9, 16, 37])  # no whole block, one block and nothing after it, two and 5 after
def test_chunk_graph_rows_at_their_own_positions(N):
    """Rows of one chunk call at different positions, each given its own frames from its position // hop on, draw
    what the model's step draws for that row alone at those positions (features[b, f] is frame position[b] // hop
    + f of row b)."""
    import onnxruntime as ort
    from arexport.chunk import sample_inverse_cdf

    model, hop = tiny_vocoder(0)[0], VOCODER["mel_hop"]
    session = ort.InferenceSession(str(exported_vocoder("chunk")), providers=["CPUExecutionProvider"])
    position = np.array([0, 6, 13])
    B, rng = len(position), np.random.default_rng(3)
    F = (position % hop + N - 1) // hop + 1  # frames each row needs
    frames = frames_for(model, B, int(F.max()) * hop, seed=4)  # (B, F, M) row b's frames from position[b] // hop
    u = rng.random((B, N))
    R, C = model.state_spec()[0].shape
    tokens = session.run(None, {"input_ids": np.full(B, 256), "position": position, "features": frames,
                                "uniforms": u, "in.queue": np.zeros((B, R, C), np.float32)})[0]
    for b in range(B):
        with torch.no_grad():
            vectors, state, token = model.frame_vectors(torch.from_numpy(frames[b:b + 1])), model.init_state(1), 256
            for i in range(N):
                p = int(position[b]) + i
                logits, state = model.step(torch.tensor([token]), torch.tensor([p]), state,
                                           features=vectors[:, (position[b] % hop + i) // hop])
                token = int(sample_inverse_cdf(logits, torch.from_numpy(u[b:b + 1, i]))[0])
                assert tokens[b, i] == token, (b, i)
